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

use crate::cancel::{CancelToken, Cancelled};
use crate::cutter::Cutter;
use crate::geom::{Aabb, Point3};
pub use crate::sim_spec::SimulateSpec;
use crate::simulate::{
    Pass, PassReport, PassTally, SimulateError, Target, Verification, verify_tile,
};
use crate::stock_model::{PartMoves, StockModel, TileHit, swept_moves};
use crate::toolpath::{Move, MoveKind, Toolpath};
use crate::{Mesh, TriangleIndex};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Chunks a simulation aims at: enough that no chunk is more than a few percent of the work
/// (a raster program's moves are spread over the stock, a roughing layer's over all of it),
/// few enough that each chunk's share of moves is swept once for several tiles.
pub(crate) const CHUNKS: usize = 256;

/// What one move did over a chunk's tiles: [`TileHit`] without the deep-cut extent, which a
/// simulation never asks for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkPass {
    /// Per tile: what each move that met material did there, in move order.
    pub cuts: Vec<Vec<MoveCut>>,
    /// How each of its tiles compares with the model after the pass (none without a model).
    pub checks: Vec<Verification>,
}

/// What one chunk of a simulation computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StockChunk {
    pub chunk: u32,
    /// Each tile's heights below the uncut top after the last pass, row by row.
    pub heights: Vec<Vec<f32>>,
    /// Per pass, in order.
    pub passes: Vec<ChunkPass>,
}

/// The machined stock and, per pass, its report and (with a model) its check.
pub type Simulated = (StockModel, Vec<(PassReport, Option<Verification>)>);

/// The model a simulation is checked against, held by the job ([`Target`] borrows it).
#[derive(Clone, Debug)]
pub struct Model {
    pub mesh: Arc<Mesh>,
    pub index: Arc<TriangleIndex>,
    /// The lowest the program is meant to cut (the setup's floor).
    pub floor: f64,
}

impl Model {
    fn target(&self) -> Target<'_> {
        Target {
            mesh: &self.mesh,
            index: &self.index,
            floor: self.floor,
        }
    }
}

/// A simulation of a program's moves on one stock, planned as chunks of tiles. It holds what
/// a chunk needs — the moves, the model, the stock — and nothing that only names or times
/// the moves: those come with the passes given to [`finish`](Self::finish), on the job's
/// owner.
#[derive(Debug)]
pub struct SimulationJob {
    program: Arc<ProgramMoves>,
    /// Per pass, per tile: the moves whose swept box reaches it, in order.
    reach: Vec<Vec<Vec<u32>>>,
    model: Option<Model>,
    tolerance: f64,
    /// The cell size, and the stock's tiles without their cells: where each tile is.
    cell: f64,
    layout: StockModel,
    tiles_per_chunk: usize,
    /// The block and the budget the layout was made for: what [`spec`](Self::spec) tells a
    /// pool member.
    stock: Aabb,
    budget: usize,
}

impl SimulationJob {
    /// Plans the simulation of `program` on the block `stock` in cells of `cell` mm (within
    /// `budget` bytes of heights), checked after each pass against `model` where given,
    /// cells more than `tolerance` below it being gouges.
    pub fn new(
        stock: Aabb,
        cell: f64,
        budget: usize,
        program: Arc<ProgramMoves>,
        model: Option<Model>,
        tolerance: f64,
    ) -> Result<Self, SimulateError> {
        for (k, (cutter, tp)) in program.passes.iter().enumerate() {
            cutter
                .validate()
                .map_err(|e| SimulateError::Input(format!("pass {}: {e}", k + 1)))?;
            if u32::try_from(tp.moves.len()).is_err() {
                return Err(SimulateError::Input(format!(
                    "pass {}: {} moves, more than a simulation takes",
                    k + 1,
                    tp.moves.len()
                )));
            }
        }
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(SimulateError::Input(format!(
                "the tolerance must be a positive number of millimetres, got {tolerance}"
            )));
        }
        let layout = StockModel::part(stock, cell, budget, 0..0)
            .map_err(|e| SimulateError::Input(format!("cannot make the stock: {e}")))?;
        let reach = program
            .passes
            .iter()
            .map(|(cutter, tp)| layout.reach(cutter, tp))
            .collect();
        let tiles_per_chunk = tiles_per_chunk(layout.tile_count());
        Ok(Self {
            program,
            reach,
            model,
            tolerance,
            cell,
            layout,
            tiles_per_chunk,
            stock,
            budget,
        })
    }

    /// The moves it machines.
    pub fn program(&self) -> &Arc<ProgramMoves> {
        &self.program
    }

    /// What a pool member is told of this simulation before it has the program
    /// ([`SimulateSpec`]): `None` without a model (a simulation of G-code alone stays on the
    /// host that has the G-code: there is no mesh to name).
    pub fn spec(&self) -> Option<SimulateSpec> {
        self.spec_of(self.program.hash())
    }

    /// [`spec`](Self::spec) for a program whose hash is known already (hashing a long
    /// program's moves is not free).
    pub(crate) fn spec_of(&self, program: ProgramHash) -> Option<SimulateSpec> {
        let model = self.model.as_ref()?;
        let reach = (0..self.chunk_count())
            .map(|c| {
                let tiles = self.chunk_tiles(c);
                let per_pass = self.reach.iter().map(|r| &r[tiles.clone()]);
                per_pass.flatten().map(|l| l.len() as u64).sum()
            })
            .collect();
        Some(SimulateSpec {
            program,
            moves: self
                .program
                .passes
                .iter()
                .map(|(_, tp)| tp.moves.len() as u64)
                .collect(),
            stock: self.stock,
            cell: self.cell,
            // The same cells as the budget asked for: no stock has more than MAX_CELLS.
            budget: self.budget.min(crate::stock_model::MAX_CELLS * 4) as u64,
            tolerance: self.tolerance,
            floor: model.floor,
            reach,
        })
    }

    /// The model it is checked against, if any.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
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
        let mut part = self.layout.part_of(tiles.clone());
        let mut passes = Vec::with_capacity(self.reach.len());
        for ((cutter, toolpath), reach) in self.program.passes.iter().zip(&self.reach) {
            let lists = &reach[tiles.clone()];
            // The moves that reach any of the chunk's tiles, swept once for all of them.
            let mut ids: Vec<u32> = lists.iter().flatten().copied().collect();
            ids.sort_unstable();
            ids.dedup();
            let swept = swept_moves(cutter, toolpath, &ids);
            let places: Vec<Vec<u32>> = lists.iter().map(|l| places_in(&ids, l)).collect();
            let moves = PartMoves {
                ids: &ids,
                swept: &swept,
                lists: &places,
            };
            let stop = || cancel.is_cancelled();
            let hits = part
                .machine_part(cutter, tiles.clone(), &moves, &stop)
                .ok_or(Cancelled)?;
            let checks = match &self.model {
                Some(m) => tiles
                    .clone()
                    .map(|k| {
                        verify_tile(&part.tile_cells(k), &m.target(), self.tolerance, self.cell)
                    })
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

    /// Puts the chunks together, in chunk order: the machined stock and the report and check
    /// of each of `passes` (the program's passes, named, with their feeds). Every chunk must
    /// be there once, and each of the shape its chunk has.
    pub fn finish(
        &self,
        mut chunks: Vec<StockChunk>,
        passes: &[Pass<'_>],
    ) -> Result<Simulated, SimulateError> {
        let bad = |m: String| Err(SimulateError::Input(format!("simulation result: {m}")));
        let same = |p: &Pass<'_>, (cutter, tp): &(Cutter, Toolpath)| {
            p.cutter == *cutter && p.toolpath.start == tp.start && p.toolpath.moves == tp.moves
        };
        if passes.len() != self.program.passes.len()
            || !passes
                .iter()
                .zip(&self.program.passes)
                .all(|(p, m)| same(p, m))
        {
            return Err(SimulateError::Input(
                "the passes are not the ones the simulation machined".into(),
            ));
        }
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
        let mut stock = self.layout.part_of(0..0);
        for chunk in &mut chunks {
            let tiles = self.chunk_tiles(chunk.chunk);
            if chunk.heights.len() != tiles.len() || chunk.passes.len() != passes.len() {
                return bad(format!("chunk {} is of the wrong shape", chunk.chunk));
            }
            for (k, h) in tiles.zip(std::mem::take(&mut chunk.heights)) {
                if !h.iter().all(|z| z.is_finite()) || !stock.set_tile_heights(k, h) {
                    return bad(format!("chunk {} has a malformed tile", chunk.chunk));
                }
            }
        }
        let mut out = Vec::with_capacity(passes.len());
        for (p, pass) in passes.iter().enumerate() {
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
                        let after = |c: &MoveCut| c.index < cut.index;
                        let in_order = *at == 0 || cuts.get(*at - 1).is_some_and(after);
                        if (cut.index as usize) < w0 || !in_order || !cut_is_sound(cut) {
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
            let check = match self.model {
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

    /// Runs every chunk on the current rayon pool and puts them together with `passes`
    /// ([`finish`](Self::finish)), calling `progress(chunks done, chunks)` as each chunk
    /// finishes (from the thread that ran it).
    pub fn run(
        &self,
        passes: &[Pass<'_>],
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
        self.finish(chunks, passes)
    }
}

/// Tiles per chunk for a stock of `tiles` tiles: a function of the stock and the cell size
/// alone, so the owner and every pool member cut the job the same way.
pub(crate) fn tiles_per_chunk(tiles: usize) -> usize {
    tiles.div_ceil(CHUNKS).max(1)
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
pub(crate) fn cut_is_sound(c: &MoveCut) -> bool {
    c.depth.is_finite()
        && c.depth >= 0.0
        && c.removed.is_finite()
        && c.removed >= 0.0
        && !c.across.0.is_nan()
        && !c.across.1.is_nan()
}

/// BLAKE3 hash of a program's canonical bytes ([`ProgramMoves::canonical_bytes`]): how a pool
/// member will name the moves of a simulation, as [`MeshHash`](crate::MeshHash) names a mesh.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ProgramHash(pub [u8; 32]);

impl std::fmt::Display for ProgramHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0[..8].iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The moves a simulation machines, and nothing else: each pass's cutter and toolpath. What
/// a chunk needs, and all a pool member will be sent; the passes' names, feeds and G-code
/// lines only name and time the moves, so they stay with the job's owner.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramMoves {
    pub passes: Vec<(Cutter, Toolpath)>,
}

/// What the canonical bytes start with: the format and its version.
const PROGRAM_MAGIC: &[u8; 8] = b"MPMOVES1";
/// Bytes of a pass's head (cutter kind and two sizes, start point, move count) and of a move
/// (kind and end point).
const PASS_HEAD_BYTES: usize = 1 + 16 + 24 + 8;
const MOVE_BYTES: usize = 1 + 24;

impl ProgramMoves {
    /// The moves of `passes` (their cutters and toolpaths).
    pub fn of(passes: &[Pass<'_>]) -> Self {
        Self {
            passes: passes
                .iter()
                .map(|p| (p.cutter, p.toolpath.clone()))
                .collect(),
        }
    }

    /// Feeds the canonical bytes to `out`, a piece at a time: the magic, the number of
    /// passes (u32), then per pass its cutter (kind byte, two f64), its start (three f64),
    /// its number of moves (u64) and each move (kind byte, three f64); little-endian.
    fn encode(&self, out: &mut dyn FnMut(&[u8])) {
        out(PROGRAM_MAGIC);
        out(&(self.passes.len() as u32).to_le_bytes());
        let mut buf = Vec::with_capacity(4096 * MOVE_BYTES);
        for (cutter, tp) in &self.passes {
            let (kind, a, b) = match *cutter {
                Cutter::Flat { diameter } => (0u8, diameter, 0.0),
                Cutter::Ball { diameter } => (1, diameter, 0.0),
                Cutter::Bull {
                    diameter,
                    corner_radius,
                } => (2, diameter, corner_radius),
                Cutter::VBit {
                    diameter,
                    included_angle,
                } => (3, diameter, included_angle),
            };
            buf.clear();
            buf.push(kind);
            for v in [a, b, tp.start.x, tp.start.y, tp.start.z] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            buf.extend_from_slice(&(tp.moves.len() as u64).to_le_bytes());
            out(&buf);
            for moves in tp.moves.chunks(4096) {
                buf.clear();
                for m in moves {
                    buf.push(match m.kind {
                        MoveKind::Rapid => 0,
                        MoveKind::Plunge => 1,
                        MoveKind::Cut => 2,
                    });
                    for v in [m.to.x, m.to.y, m.to.z] {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
                out(&buf);
            }
        }
    }

    /// The bytes [`hash`](Self::hash) covers and a pool member is sent.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.encode(&mut |b| bytes.extend_from_slice(b));
        bytes
    }

    pub fn hash(&self) -> ProgramHash {
        let mut h = blake3::Hasher::new();
        self.encode(&mut |b| {
            h.update(b);
        });
        ProgramHash(*h.finalize().as_bytes())
    }

    /// Reads `canonical_bytes` back, checking every count against the bytes left before
    /// allocating for it, every number (finite coordinates, a valid cutter) and every kind;
    /// an error names `what` and the byte where reading stopped.
    pub fn from_canonical_bytes(bytes: &[u8], what: &str) -> Result<Self, SimulateError> {
        let mut r = Reader { bytes, at: 0, what };
        if r.take(PROGRAM_MAGIC.len())? != PROGRAM_MAGIC {
            return Err(r.error("not a Millpond program (wrong magic)"));
        }
        let count = r.u32()? as usize;
        if count > r.left() / PASS_HEAD_BYTES {
            return Err(r.error(&format!("{count} passes cannot fit in the bytes left")));
        }
        let mut passes = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.byte()?;
            let (a, b) = (r.f64()?, r.f64()?);
            let cutter = match kind {
                0 => Cutter::Flat { diameter: a },
                1 => Cutter::Ball { diameter: a },
                2 => Cutter::Bull {
                    diameter: a,
                    corner_radius: b,
                },
                3 => Cutter::VBit {
                    diameter: a,
                    included_angle: b,
                },
                k => return Err(r.error(&format!("unknown cutter kind {k}"))),
            };
            cutter.validate().map_err(|e| r.error(&e.to_string()))?;
            let start = r.point()?;
            let n = r.u64()?;
            if n > (r.left() / MOVE_BYTES) as u64 {
                return Err(r.error(&format!("{n} moves cannot fit in the bytes left")));
            }
            let mut moves = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let kind = match r.byte()? {
                    0 => MoveKind::Rapid,
                    1 => MoveKind::Plunge,
                    2 => MoveKind::Cut,
                    k => return Err(r.error(&format!("unknown move kind {k}"))),
                };
                moves.push(Move {
                    kind,
                    to: r.point()?,
                });
            }
            passes.push((cutter, Toolpath { start, moves }));
        }
        if r.left() > 0 {
            return Err(r.error(&format!("{} bytes after the last pass", r.left())));
        }
        Ok(Self { passes })
    }
}

/// Reads canonical bytes, naming where it stopped.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    what: &'b str,
}

impl<'b> Reader<'b> {
    fn error(&self, why: &str) -> SimulateError {
        SimulateError::Input(format!("{}: byte {}: {why}", self.what, self.at))
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], SimulateError> {
        if n > self.left() {
            return Err(self.error("cut short"));
        }
        self.at += n;
        Ok(&self.bytes[self.at - n..self.at])
    }

    fn byte(&mut self) -> Result<u8, SimulateError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, SimulateError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, SimulateError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn f64(&mut self) -> Result<f64, SimulateError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A point with finite coordinates.
    fn point(&mut self) -> Result<Point3, SimulateError> {
        let p = Point3::new(self.f64()?, self.f64()?, self.f64()?);
        if !p.is_finite() {
            return Err(self.error("a coordinate is not a finite number"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ChunkData, ChunkResult, JobContext, JobOutput, JobSpec, Operation};
    use crate::runner::{Executor, Local};
    use crate::simulate::PassFeeds;
    use crate::toolpath::Feeds;

    /// Three passes of a CAD-like part's program: a bull nose facing down in steps with
    /// plunges and rapids, a ball raster over a bumpy surface, a V-bit engraving.
    fn program() -> ProgramMoves {
        let mut face = Toolpath::new(Point3::new(-4.0, -4.0, 20.0));
        for (k, z) in [8.0, 6.0].into_iter().enumerate() {
            face.push(MoveKind::Rapid, Point3::new(-4.0, -4.0 + k as f64, 12.0));
            face.push(MoveKind::Plunge, Point3::new(-4.0, -4.0 + k as f64, z));
            for j in 0..7 {
                let y = -4.0 + 4.0 * j as f64;
                face.push(MoveKind::Cut, Point3::new(44.0, y, z));
                face.push(MoveKind::Cut, Point3::new(-4.0, y + 2.0, z));
            }
        }
        let mut raster = Toolpath::new(Point3::new(0.0, 0.0, 15.0));
        for j in 0..40 {
            let y = 0.5 * j as f64;
            for i in 0..=80 {
                let x = 0.5 * if j % 2 == 0 { i } else { 80 - i } as f64;
                let z = 5.0 + (x * 0.3).sin() + (y * 0.2).cos();
                let kind = if i == 0 {
                    MoveKind::Rapid
                } else {
                    MoveKind::Cut
                };
                raster.push(kind, Point3::new(x, y, z));
            }
        }
        let mut engrave = Toolpath::new(Point3::new(10.0, 10.0, 10.0));
        engrave.push(MoveKind::Plunge, Point3::new(10.0, 10.0, 4.5));
        engrave.push(MoveKind::Cut, Point3::new(30.0, 12.0, 4.0));
        engrave.push(MoveKind::Cut, Point3::new(20.0, 18.0, 4.2));
        ProgramMoves {
            passes: vec![
                (
                    Cutter::Bull {
                        diameter: 8.0,
                        corner_radius: 1.0,
                    },
                    face,
                ),
                (Cutter::Ball { diameter: 3.0 }, raster),
                (
                    Cutter::VBit {
                        diameter: 6.0,
                        included_angle: 60.0,
                    },
                    engrave,
                ),
            ],
        }
    }

    fn stock() -> Aabb {
        Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(40.0, 20.0, 10.0),
        }
    }

    #[test]
    fn a_program_crosses_as_canonical_bytes_and_machines_the_same_chunks() {
        let program = program();
        let bytes = program.canonical_bytes();
        // The hash covers exactly the bytes sent, fed in pieces or whole.
        assert_eq!(program.hash().0, *blake3::hash(&bytes).as_bytes());
        let back = ProgramMoves::from_canonical_bytes(&bytes, "test").unwrap();
        assert_eq!(back, program);
        assert_eq!(back.hash(), program.hash());
        // The program read back machines the same chunks, which put together with the
        // named passes give their reports.
        let a = SimulationJob::new(
            stock(),
            0.1,
            usize::MAX,
            Arc::new(program.clone()),
            None,
            1e-3,
        )
        .unwrap();
        let b = SimulationJob::new(stock(), 0.1, usize::MAX, Arc::new(back), None, 1e-3).unwrap();
        assert_eq!(a.chunk_count(), b.chunk_count());
        let cancel = CancelToken::new();
        let chunks: Vec<StockChunk> = (0..a.chunk_count())
            .map(|c| {
                let (x, y) = (
                    a.run_chunk(c, &cancel).unwrap(),
                    b.run_chunk(c, &cancel).unwrap(),
                );
                assert_eq!(x, y, "chunk {c}");
                x
            })
            .collect();
        let (_, reports) = b.finish(chunks, &named(&program)).unwrap();
        assert!(
            reports
                .iter()
                .all(|(r, _)| r.name == "roughing" && r.tool_number == 7)
        );
        assert!(
            reports.iter().all(|(r, _)| r.removed_mm3 > 0.0),
            "{reports:?}"
        );
        // Another program, another hash.
        let mut moved = program.clone();
        moved.passes[1].1.moves[5].to.z += 1e-9;
        assert_ne!(moved.hash(), program.hash());
    }

    fn named(program: &ProgramMoves) -> Vec<Pass<'_>> {
        program
            .passes
            .iter()
            .map(|(cutter, toolpath)| Pass {
                name: "roughing",
                tool_number: 7,
                cutter: *cutter,
                toolpath,
                feeds: PassFeeds::Operation(Feeds::default()),
                lines: None,
            })
            .collect()
    }

    /// A simulation checked against a block model, as a job: its spec, its context.
    fn simulation_job() -> (JobSpec, JobContext, Arc<ProgramMoves>) {
        let (lo, hi) = (Point3::new(5.0, 5.0, 0.0), Point3::new(35.0, 15.0, 6.5));
        let mesh = Mesh::from_triangles(crate::models::box_solid(lo, hi), "block").unwrap();
        let (mesh, index) = (Arc::new(mesh.clone()), Arc::new(TriangleIndex::new(&mesh)));
        let program = Arc::new(program());
        let model = Model {
            mesh: mesh.clone(),
            index: index.clone(),
            floor: 0.0,
        };
        let plan = SimulationJob::new(stock(), 0.1, usize::MAX, program.clone(), Some(model), 1e-3);
        let spec = JobSpec {
            mesh: mesh.hash(),
            cutter: program.passes[0].0,
            operation: Operation::Simulate(plan.unwrap().spec().unwrap()),
        };
        let ctx = JobContext::simulation(mesh, index, spec.clone(), program.clone()).unwrap();
        (spec, ctx, program)
    }

    #[test]
    fn a_simulation_is_a_job_like_any_other_with_the_same_stock_and_figures() {
        let (spec, ctx, program) = simulation_job();
        let cancel = CancelToken::new();
        let passes = named(&program);
        let sim = ctx.simulation_job().unwrap();
        let (direct, figures) = sim.run(&passes, &cancel, &|_, _| {}).unwrap();
        assert!(spec.chunk_count() > 1);
        // The executor every job runs on, on 1 and 2 threads: the same bits as running the
        // simulation's chunks directly (themselves the batch-by-batch simulation's: see
        // `simulate`'s tests).
        for threads in [1, 2] {
            let out = Local { threads }.run(&ctx, &cancel, &|_| {}).unwrap();
            let JobOutput::Stock(chunks) = out else {
                panic!("a simulation gives stock")
            };
            let (stock, reports) = sim.finish(chunks, &passes).unwrap();
            assert_eq!(stock.heights(), direct.heights(), "{threads} threads");
            assert_eq!(reports, figures, "{threads} threads");
        }
        assert!(figures.iter().any(|(r, _)| r.removed_mm3 > 0.0));
        // Its work is the meetings of moves and tiles, spread over every chunk.
        let work: Vec<u64> = (0..spec.chunk_count())
            .map(|c| spec.chunk_points(c))
            .collect();
        assert_eq!(work.iter().sum::<u64>(), spec.points_total());
        assert!(work.iter().all(|&w| w >= 1) && spec.points_total() > work.len() as u64);
        // Every honest chunk passes the checks a pool member makes of a result, within the
        // bounds it judges a result's size by.
        for c in 0..spec.chunk_count() {
            let r = ctx.run_chunk(c, &cancel).unwrap();
            r.validate(&spec).unwrap();
            assert!(
                r.encoded_size_bound() <= spec.max_result_bytes(c),
                "chunk {c}"
            );
            assert!(spec.preview(&r).is_empty());
        }
        // The spec crosses as text and comes back the same.
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn a_simulation_job_refuses_another_program_a_forged_plan_and_forged_results() {
        let (spec, ctx, program) = simulation_job();
        let (mesh, index) = (ctx.mesh().clone(), ctx.index().clone());
        // Without its program, with another, or with a plan its program does not give.
        let err = JobContext::new(mesh.clone(), index.clone(), spec.clone()).unwrap_err();
        assert!(err.to_string().contains("needs its program"), "{err}");
        let mut other = (*program).clone();
        other.passes[1].1.moves[3].to.z -= 0.5;
        let err =
            JobContext::simulation(mesh.clone(), index.clone(), spec.clone(), Arc::new(other))
                .unwrap_err();
        assert!(err.to_string().contains("was given program"), "{err}");
        let forge = |f: &dyn Fn(&mut SimulateSpec)| {
            let mut s = spec.clone();
            let Operation::Simulate(sim) = &mut s.operation else {
                unreachable!()
            };
            f(sim);
            JobContext::simulation(mesh.clone(), index.clone(), s, program.clone())
                .unwrap_err()
                .to_string()
        };
        assert!(forge(&|s| s.reach[0] += 1).contains("plan is not the one"));
        assert!(forge(&|s| s.moves[0] = 1).contains("plan is not the one"));
        assert!(forge(&|s| s.reach.push(1)).contains("chunks planned"));
        assert!(forge(&|s| s.cell = 0.0).contains("cannot make the stock"));
        assert!(forge(&|s| s.tolerance = f64::NAN).contains("tolerance"));
        assert!(forge(&|s| s.moves.clear()).contains("0 passes"));
        // Results a peer could forge: each refused by the checks made before it is used.
        let cancel = CancelToken::new();
        let honest = ctx.run_chunk(1, &cancel).unwrap();
        let refused = |f: &dyn Fn(&mut StockChunk)| {
            let mut r = honest.clone();
            let ChunkData::Stock(s) = &mut r.data else {
                unreachable!()
            };
            f(s);
            r.validate(&spec).unwrap_err().to_string()
        };
        fn cut(s: &mut StockChunk) -> &mut Vec<MoveCut> {
            s.passes[1].cuts.iter_mut().find(|c| c.len() > 1).unwrap()
        }
        assert!(refused(&|s| s.chunk = 0).contains("carries the stock of chunk 0"));
        assert!(refused(&|s| s.heights[0].push(0.0)).contains("malformed tile"));
        assert!(refused(&|s| s.heights[0][3] = f32::NAN).contains("malformed tile"));
        assert!(refused(&|s| s.passes.pop().map(drop).unwrap()).contains("wrong shape"));
        assert!(refused(&|s| s.passes[0].checks.clear()).contains("missing"));
        assert!(refused(&|s| cut(s)[0].index = 1 << 30).contains("malformed cut"));
        assert!(refused(&|s| cut(s).swap(0, 1)).contains("malformed cut"));
        assert!(refused(&|s| cut(s)[0].removed = -1.0).contains("malformed cut"));
        assert!(
            refused(&|s| {
                let c = cut(s);
                // Every move of the raster, where only those over the tile reach it.
                let all = program.passes[1].1.moves.len() as u32;
                let extra: Vec<MoveCut> = (0..all).map(|k| MoveCut { index: k, ..c[0] }).collect();
                *c = extra;
            })
            .contains("more cuts than moves reach it")
        );
        assert!(
            refused(&|s| s.passes[2].checks[0].remaining_mean = f64::INFINITY)
                .contains("malformed check")
        );
        // A result of a toolpath's kind for a simulation's chunk.
        let wrong = ChunkResult {
            chunk: 1,
            data: ChunkData::Heights(vec![0.0; 4]),
        };
        assert!(
            wrong
                .validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("wrong kind")
        );
    }

    #[test]
    fn bad_program_bytes_are_refused_with_where_they_went_wrong() {
        let bytes = program().canonical_bytes();
        let refused = |b: &[u8]| match ProgramMoves::from_canonical_bytes(b, "peer P") {
            Err(SimulateError::Input(m)) => m,
            other => panic!("accepted: {other:?}"),
        };
        // Cut short anywhere, one byte too many.
        for n in [0, 7, 8, 11, 12, 40, 61, 62, 100, bytes.len() - 1] {
            let m = refused(&bytes[..n]);
            assert!(m.starts_with("peer P: byte "), "{m}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(refused(&long).contains("1 bytes after the last pass"));
        // Each field spoiled in turn: the magic, counts too large for the bytes, an unknown
        // cutter or move kind, a bad cutter, a coordinate that is not a number.
        let spoil = |at: usize, with: &[u8]| {
            let mut b = bytes.clone();
            b[at..at + with.len()].copy_from_slice(with);
            refused(&b)
        };
        assert!(spoil(0, b"X").contains("magic"));
        assert!(spoil(8, &u32::MAX.to_le_bytes()).contains("passes cannot fit"));
        let head = 12;
        assert!(spoil(head, &[9]).contains("unknown cutter kind 9"));
        assert!(spoil(head + 1, &0f64.to_le_bytes()).contains("diameter"));
        assert!(spoil(head + 1 + 16, &f64::NAN.to_le_bytes()).contains("finite"));
        let moves = head + PASS_HEAD_BYTES;
        assert!(spoil(moves - 8, &u64::MAX.to_le_bytes()).contains("moves cannot fit"));
        assert!(spoil(moves, &[3]).contains("unknown move kind 3"));
        assert!(spoil(moves + 1, &f64::INFINITY.to_le_bytes()).contains("finite"));
        // Random bytes after a good head never panic and never allocate for a lie.
        let mut seed = 99u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 32
        };
        let mut read = 0;
        for _ in 0..20_000 {
            let mut b = bytes[..head].to_vec();
            let n = next() % 300;
            b.extend((0..n).map(|_| next() as u8));
            read += usize::from(ProgramMoves::from_canonical_bytes(&b, "fuzz").is_ok());
        }
        // Three passes of random bytes, each the right length: none reads.
        assert_eq!(read, 0);
    }
}
