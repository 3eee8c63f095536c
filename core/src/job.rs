//! Jobs, chunks and their assembly (ARCHITECTURE.md §2).
//!
//! A [`JobSpec`] holds everything a computation depends on. It plans into chunks whose split
//! depends only on the spec — never on threads or hosts — and [`JobContext::run_chunk`]
//! computes one chunk as a pure function of (mesh, spec, chunk). Results are assembled in
//! chunk order, so arrival order never matters and every runner gives the same bits.

use crate::cutter::Cutter;
use crate::drop::{Band, DropCutter};
use crate::geom::Point3;
use crate::index::TriangleIndex;
use crate::mesh::{Mesh, MeshHash};
use crate::raster::{self, RasterSpec};
use crate::rest::RestMaterial;
use crate::sim_job::{ProgramMoves, SimulationJob, StockChunk};
use crate::sim_spec::{self, SimulateSpec};
use crate::toolpath::Toolpath;
use crate::waterline::{self, Chain, ContourSpec, Level, WaterlineSpec};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

pub use crate::error::JobError;
pub use crate::grid::{Grid, MAX_POINTS, MAX_POINTS_PER_LINE};

/// Version of everything that decides the bits of a chunk result. Pool peers must match it
/// exactly for a pooled job to equal a local one; bump it with any change to the contact
/// math, the chunk split or the result encoding.
pub const COMPUTE_ABI: u32 = 11;

/// Points a chunk aims at. Large enough that per-chunk overhead (a pool round trip, an index
/// query per line) is small, small enough that two workers balance and a lost chunk is cheap.
const CHUNK_POINTS: usize = 32_768;

/// Chunks a contour job is cut into where its grid has the rows: enough that no chunk is
/// more than a few percent of the job (see [`JobSpec::lines_per_chunk`]).
const CONTOUR_CHUNKS: usize = 256;

/// Bytes a postcard varint of a `u64` or `usize` (a length, a key) takes at most: what the
/// bounds on a result's encoded size count each one as.
const LEN: u64 = 10;

/// Rows times levels a contour chunk computes at least (see [`JobSpec::lines_per_chunk`]).
const CONTOUR_LEVEL_ROWS: usize = 64;

fn finite(name: &str, v: f64) -> Result<(), JobError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(JobError::Invalid(format!(
            "{name} must be a finite number, got {v}"
        )))
    }
}

/// The raw drop-cutter grid of the `drop` command: every point, no merging, no linking.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropSpec {
    pub grid: Grid,
    /// Lowest tip height (stock bottom).
    pub floor: f64,
}

/// What to compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Operation {
    Drop(DropSpec),
    Raster(RasterSpec),
    /// Raw waterline contours (the `waterline` command).
    Contours(ContourSpec),
    /// Waterline finishing.
    Waterline(WaterlineSpec),
    /// Roughing by slices.
    Rough(crate::rough::RoughSpec),
    /// Stock simulation of a program, checked against the job's mesh (the model): chunks of
    /// the stock's tiles ([`crate::sim_job`]). Its moves are a second input, bound with
    /// [`JobContext::simulation`].
    Simulate(SimulateSpec),
}

/// Everything a computation depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The mesh this job was planned for.
    pub mesh: MeshHash,
    /// The tool (for a simulation, its first pass's: each pass has its own).
    pub cutter: Cutter,
    pub operation: Operation,
}

pub use crate::cancel::{CancelToken, Cancelled};

impl JobSpec {
    /// The grid of CL points a toolpath operation computes (a simulation has none).
    pub fn grid(&self) -> Option<&Grid> {
        match &self.operation {
            Operation::Drop(d) => Some(&d.grid),
            Operation::Raster(r) => Some(&r.grid),
            Operation::Contours(c) => Some(&c.grid),
            Operation::Waterline(w) => Some(&w.contours.grid),
            Operation::Rough(r) => Some(&r.contours.grid),
            Operation::Simulate(_) => None,
        }
    }

    /// The grid, for the code of toolpath operations only (a simulation never reaches it:
    /// every caller is behind a match or a `contours()` that leaves simulations out).
    fn cl_grid(&self) -> &Grid {
        const NONE: Grid = Grid {
            axis: crate::drop::Axis::X,
            bounds: crate::geom::Rect {
                xmin: 0.0,
                xmax: 0.0,
                ymin: 0.0,
                ymax: 0.0,
            },
            step: 1.0,
            sampling: 1.0,
        };
        self.grid().unwrap_or(&NONE)
    }

    /// The simulation this job is, if it is one.
    pub fn simulation(&self) -> Option<&SimulateSpec> {
        match &self.operation {
            Operation::Simulate(s) => Some(s),
            _ => None,
        }
    }

    /// The job's work in all, in the units of [`chunk_points`](Self::chunk_points): CL
    /// points, or a simulation's (move, tile) meetings.
    pub fn points_total(&self) -> u64 {
        match &self.operation {
            Operation::Simulate(s) => (0..s.chunk_count()).map(|c| s.chunk_work(c)).sum(),
            _ => self.cl_grid().points(),
        }
    }

    /// Material left on the surface, mm.
    pub fn allowance(&self) -> f64 {
        match &self.operation {
            Operation::Drop(_) => 0.0,
            Operation::Raster(r) => r.allowance,
            Operation::Contours(c) => c.allowance,
            Operation::Waterline(w) => w.contours.allowance,
            Operation::Rough(r) => r.contours.allowance,
            Operation::Simulate(_) => 0.0,
        }
    }

    /// The contour levels, for operations made of contours.
    fn contours(&self) -> Option<&ContourSpec> {
        match &self.operation {
            Operation::Contours(c) => Some(c),
            Operation::Waterline(w) => Some(&w.contours),
            Operation::Rough(r) => Some(&r.contours),
            Operation::Drop(_) | Operation::Raster(_) | Operation::Simulate(_) => None,
        }
    }

    pub fn floor(&self) -> f64 {
        match &self.operation {
            Operation::Drop(d) => d.floor,
            Operation::Raster(r) => r.floor,
            Operation::Contours(c) => c.floor(),
            Operation::Waterline(w) => w.contours.floor(),
            Operation::Rough(r) => r.contours.floor(),
            Operation::Simulate(s) => s.floor,
        }
    }

    /// Checks every number before any work is planned.
    pub fn validate(&self) -> Result<(), JobError> {
        self.cutter.validate()?;
        if let Some(grid) = self.grid() {
            grid.validate()?;
        }
        finite("floor", self.floor())?;
        match &self.operation {
            Operation::Drop(_) => {}
            Operation::Raster(r) => r.validate()?,
            Operation::Contours(c) => c.validate()?,
            Operation::Waterline(w) => w.validate()?,
            Operation::Rough(r) => r.validate()?,
            Operation::Simulate(s) => s.validate()?,
        }
        self.cutter.grown(self.allowance())?;
        Ok(())
    }

    /// Lines per chunk: a function of the spec only.
    ///
    /// Contour jobs (waterline, roughing) do per level what a drop grid does once, so a
    /// roughing job of a hundred layers on a coarse grid was a handful of chunks of
    /// `CHUNK_POINTS` each, and its largest chunk a fifth of its work: a second core or a
    /// pool member had little to take. They are cut into `CONTOUR_CHUNKS` chunks where the
    /// grid has the rows. A chunk also pays for its band of triangles and computes the
    /// first row of the next chunk (that row's crossings end its pieces), which the levels'
    /// work of its own rows must outweigh: at least `CONTOUR_LEVEL_ROWS` level-rows, and
    /// never fewer than 2 rows. (On a 200k-triangle relief, 20 layers of roughing in chunks
    /// of 2 rows took 13 % longer on one thread than in chunks of 65.)
    fn lines_per_chunk(&self) -> usize {
        let grid = self.cl_grid();
        let by_points = CHUNK_POINTS.div_ceil(grid.points_per_line()).max(1);
        let Some(contours) = self.contours() else {
            return by_points;
        };
        let fewest = CONTOUR_LEVEL_ROWS
            .div_ceil(contours.levels.len())
            .clamp(2, 8)
            .min(by_points);
        by_points
            .min(grid.lines().div_ceil(CONTOUR_CHUNKS))
            .max(fewest)
    }

    pub fn chunk_count(&self) -> u32 {
        if let Operation::Simulate(s) = &self.operation {
            return s.chunk_count();
        }
        let n = self.cl_grid().lines().div_ceil(self.lines_per_chunk());
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The raster lines chunk `c` covers (none for a simulation).
    pub fn chunk_lines(&self, c: u32) -> Range<usize> {
        if self.grid().is_none() {
            return 0..0;
        }
        let per = self.lines_per_chunk();
        let lines = self.cl_grid().lines();
        let start = (c as usize * per).min(lines);
        start..(start + per).min(lines)
    }

    /// CL points chunk `c` computes (its share of the job's work; for a simulation, the
    /// (move, tile) meetings it machines, [`SimulateSpec::chunk_work`]).
    pub fn chunk_points(&self, c: u32) -> u64 {
        if let Operation::Simulate(s) = &self.operation {
            return s.chunk_work(c);
        }
        self.chunk_lines(c).len() as u64 * self.cl_grid().points_per_line() as u64
    }

    /// Most bytes the postcard encoding of any result of chunk `c` that passes
    /// [`ChunkResult::validate`] can take: exact for heights (8 bytes each), the shapes
    /// `validate` allows for polylines and contour pieces (every point 24 or 16 bytes, and
    /// each line or piece its own length and keys). A pool peer checks a result's announced
    /// size against it before reading a byte of it.
    pub fn max_result_bytes(&self, c: u32) -> u64 {
        let lines = self.chunk_lines(c).len() as u64;
        let per_line = self.cl_grid().points_per_line() as u64;
        // The chunk number (a u32 varint), the variant, the outer length.
        let head = 5 + LEN + LEN;
        let body = match &self.operation {
            Operation::Simulate(s) => s.max_result_bytes(c),
            Operation::Drop(_) => (lines * per_line).saturating_mul(8),
            Operation::Raster(_) => {
                let line = (per_line * raster::MAX_POINTS_PER_SAMPLE as u64).saturating_mul(24);
                lines.saturating_mul(LEN.saturating_add(line))
            }
            Operation::Contours(_) | Operation::Waterline(_) | Operation::Rough(_) => {
                let levels = self.contours().map_or(0, |c| c.levels.len()) as u64;
                let points = (2 * (lines + 1) * per_line)
                    .saturating_mul(waterline::MAX_POINTS_PER_EDGE as u64);
                // Each piece has a point at least: its two optional keys (11 bytes each) and
                // its length, 32 bytes at most, count once per point.
                let level = points.saturating_mul(16 + 32);
                levels.saturating_mul(LEN.saturating_add(level))
            }
        };
        head.saturating_add(body)
    }

    /// What a finished chunk looks like in model space, for drawing a job while it is still
    /// being assembled: polylines through the CL points it found.
    ///
    /// - Raster: the chunk's merged CL polylines as they are (one per raster line).
    /// - Drop grid: each raster line's points at their tip heights.
    /// - Waterline, roughing and raw contours: each contour piece at its level's tip height.
    ///   That is the height the finished toolpath cuts the level at (the allowance is already
    ///   in the grown cutter, not in the z), but roughing's clearing passes, ramps and links
    ///   come only with assembly: the preview shows the contours each layer is cleared to.
    ///
    /// A function of the spec alone, so a pool's owner can draw results it did not compute.
    /// Pieces of contours are joined across chunks only by [`JobContext::finish`], so a contour shows
    /// as several pieces until then. A result of the wrong shape for the job gives nothing.
    pub fn preview(&self, result: &ChunkResult) -> Vec<Vec<Point3>> {
        let grid = self.cl_grid();
        match &result.data {
            // The stock is drawn whole once the simulation is put together.
            ChunkData::Stock(_) => Vec::new(),
            ChunkData::Polylines(lines) => lines.clone(),
            ChunkData::Heights(z) => {
                let per_line = grid.points_per_line();
                z.chunks(per_line)
                    .zip(self.chunk_lines(result.chunk))
                    .map(|(row, j)| {
                        row.iter()
                            .enumerate()
                            .map(|(i, &z)| grid.point(j, i, z))
                            .collect()
                    })
                    .collect()
            }
            ChunkData::Chains(levels) => {
                let zs = self.contours().map_or(&[][..], |c| &c.levels[..]);
                levels
                    .iter()
                    .zip(zs)
                    .flat_map(|(chains, &z)| {
                        chains.iter().map(move |c| {
                            c.points
                                .iter()
                                .map(|p| Point3::new(p[0], p[1], z))
                                .collect()
                        })
                    })
                    .collect()
            }
        }
    }
}

/// The shape every honest result of a chunk has, from the spec alone: what
/// [`ChunkResult::validate`] checks its counts against, and what a pool member checks a
/// result's bytes against before it decodes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultForm {
    /// Exactly this many tip heights.
    Heights(usize),
    /// One polyline per raster line, each of 1 to `most` points.
    Polylines { lines: usize, most: usize },
    /// Contour pieces for each of this many levels, each piece with a point at least.
    Chains { levels: usize },
    /// A simulation chunk's tiles of stock, cuts and checks.
    Stock(sim_spec::StockForm),
}

impl JobSpec {
    /// What chunk `c`'s result looks like ([`ResultForm`]).
    pub fn result_form(&self, c: u32) -> ResultForm {
        let lines = self.chunk_lines(c).len();
        let per_line = self.cl_grid().points_per_line();
        match &self.operation {
            Operation::Simulate(s) => ResultForm::Stock(s.form(c)),
            Operation::Drop(_) => ResultForm::Heights(lines * per_line),
            Operation::Raster(_) => ResultForm::Polylines {
                lines,
                most: per_line * raster::MAX_POINTS_PER_SAMPLE,
            },
            Operation::Contours(_) | Operation::Waterline(_) | Operation::Rough(_) => {
                ResultForm::Chains {
                    levels: self.contours().map_or(0, |c| c.levels.len()),
                }
            }
        }
    }
}

/// The result of one chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkResult {
    pub chunk: u32,
    pub data: ChunkData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChunkData {
    /// Tip heights, line after line, every point of the chunk's lines.
    Heights(Vec<f64>),
    /// One merged CL polyline per line, in cutting direction.
    Polylines(Vec<Vec<Point3>>),
    /// Contour pieces, per level.
    Chains(Vec<Vec<Chain>>),
    /// A simulation chunk's stock, cuts and checks.
    Stock(StockChunk),
}

impl ChunkData {
    /// A contour chunk's pieces, per level; none from another kind of result (a result that
    /// passed [`ChunkResult::validate`] is of its job's kind).
    pub fn into_chains(self) -> Vec<Vec<Chain>> {
        match self {
            ChunkData::Chains(c) => c,
            _ => Vec::new(),
        }
    }
}

impl ChunkResult {
    /// Most bytes its postcard encoding can take, from its counts (every length prefix
    /// counted at its widest): a pool member checks that a result it computed for a parent
    /// fits on a link before it sends it.
    pub fn encoded_size_bound(&self) -> u64 {
        let n = |v: usize| v as u64;
        let body = match &self.data {
            ChunkData::Heights(z) => LEN + 8 * n(z.len()),
            ChunkData::Polylines(lines) => {
                LEN + lines.iter().map(|l| LEN + 24 * n(l.len())).sum::<u64>()
            }
            ChunkData::Chains(levels) => {
                LEN + levels
                    .iter()
                    .map(|chains| {
                        LEN + chains
                            .iter()
                            .map(|c| 2 * (1 + LEN) + LEN + 16 * n(c.points.len()))
                            .sum::<u64>()
                    })
                    .sum::<u64>()
            }
            ChunkData::Stock(s) => sim_spec::encoded_size_bound(s),
        };
        // The chunk number (a u32 varint) and the variant.
        5 + 5 + body
    }

    /// Checks a result (from a pool peer, say) against the job before it is used: the chunk
    /// exists, the shape matches, every number is finite.
    pub fn validate(&self, spec: &JobSpec) -> Result<(), JobError> {
        let bad = |m: String| Err(JobError::BadResult(m));
        if self.chunk >= spec.chunk_count() {
            return bad(format!(
                "chunk {} out of range (job has {})",
                self.chunk,
                spec.chunk_count()
            ));
        }
        let lines = spec.chunk_lines(self.chunk).len();
        let per_line = spec.cl_grid().points_per_line();
        match (spec.result_form(self.chunk), &self.data) {
            (ResultForm::Stock(_), ChunkData::Stock(s)) => {
                if let Some(sim) = spec.simulation() {
                    sim.check_chunk(self.chunk, s).or_else(bad)?;
                }
            }
            (ResultForm::Heights(n), ChunkData::Heights(z)) => {
                if z.len() != n {
                    return bad(format!(
                        "chunk {} has {} heights, expected {n}",
                        self.chunk,
                        z.len(),
                    ));
                }
                if !z.iter().all(|v| v.is_finite()) {
                    return bad(format!("chunk {} has a non-finite height", self.chunk));
                }
            }
            (ResultForm::Polylines { lines, most }, ChunkData::Polylines(p)) => {
                if p.len() != lines {
                    return bad(format!(
                        "chunk {} has {} lines, expected {lines}",
                        self.chunk,
                        p.len()
                    ));
                }
                if p.iter().any(|l| l.is_empty() || l.len() > most) {
                    return bad(format!(
                        "chunk {} has a line of impossible length",
                        self.chunk
                    ));
                }
                if !p.iter().flatten().all(|q| q.is_finite()) {
                    return bad(format!("chunk {} has a non-finite point", self.chunk));
                }
            }
            (ResultForm::Chains { levels: c }, ChunkData::Chains(levels)) => {
                if levels.len() != c {
                    return bad(format!(
                        "chunk {} has {} levels, expected {c}",
                        self.chunk,
                        levels.len()
                    ));
                }
                // At most one crossing per grid edge of the chunk's rows, plus refinement.
                let edges = 2 * (lines + 1) * per_line * waterline::MAX_POINTS_PER_EDGE;
                let keys = (spec.cl_grid().lines() * per_line) as u64;
                for chains in levels {
                    if chains.iter().map(|c| c.points.len()).sum::<usize>() > edges {
                        return bad(format!("chunk {} has too many contour points", self.chunk));
                    }
                    let ok = |k: Option<u64>| k.is_none_or(|k| k < keys);
                    if chains.iter().any(|c| {
                        c.points.is_empty()
                            || !ok(c.start)
                            || !ok(c.end)
                            || !c.points.iter().flatten().all(|v| v.is_finite())
                    }) {
                        return bad(format!(
                            "chunk {} has a malformed contour piece",
                            self.chunk
                        ));
                    }
                }
            }
            _ => {
                return bad(format!(
                    "chunk {} is of the wrong kind for this job",
                    self.chunk
                ));
            }
        }
        Ok(())
    }
}

/// What a finished job produced.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutput {
    /// `drop`: tip heights in grid order (line after line).
    Heights(Vec<f64>),
    Toolpath(Toolpath),
    /// `waterline`: closed contours per level, in the spec's level order.
    Contours(Vec<Level>),
    /// A simulation's chunks, checked and in order: for
    /// [`SimulationJob::finish`](crate::sim_job::SimulationJob::finish) with the named passes,
    /// which only the job's owner has.
    Stock(Vec<StockChunk>),
}

/// A job bound to its mesh and index: what a host needs to run chunks and to finish.
#[derive(Debug, Clone)]
pub struct JobContext {
    mesh: Arc<Mesh>,
    index: Arc<TriangleIndex>,
    spec: JobSpec,
    /// What the earlier operations left for a rest roughing job: needed to assemble its
    /// toolpath, not to compute its chunks, so it stays with the job's owner.
    rest: Option<Arc<RestMaterial>>,
    /// A simulation job's plan, with its program ([`simulation`](Self::simulation)).
    simulation: Option<Arc<SimulationJob>>,
}

/// Raster lines longer than this are computed in pieces, so a cancel is seen within
/// milliseconds even on very long lines. Pieces give the same bits as one long sweep.
const PIECE_POINTS: usize = 4096;
/// Fewest points per line in one tile (see `lines_heights`).
const TILE_POINTS_MIN: usize = 16;

impl JobContext {
    /// Binds a validated spec to its mesh (which must be the one the spec names).
    pub fn new(
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        spec: JobSpec,
    ) -> Result<Self, JobError> {
        spec.validate()?;
        if spec.simulation().is_some() {
            return Err(JobError::Invalid(
                "a simulation job needs its program as well as its model".into(),
            ));
        }
        Self::bind(mesh, index, spec)
    }

    fn bind(mesh: Arc<Mesh>, index: Arc<TriangleIndex>, spec: JobSpec) -> Result<Self, JobError> {
        if mesh.hash() != spec.mesh {
            return Err(JobError::WrongMesh {
                expected: spec.mesh,
                actual: mesh.hash(),
            });
        }
        Ok(Self {
            mesh,
            index,
            spec,
            rest: None,
            simulation: None,
        })
    }

    /// Binds a simulation job's spec to its model and its program, and plans its chunks
    /// from them: refused unless the program is the one the spec names and the plan the spec
    /// carries (moves per pass, meetings per chunk) is the one the program gives, so that a
    /// pool member never machines a job other than its owner's.
    pub fn simulation(
        mesh: Arc<Mesh>,
        index: Arc<TriangleIndex>,
        spec: JobSpec,
        program: Arc<ProgramMoves>,
    ) -> Result<Self, JobError> {
        spec.validate()?;
        let Some(sim) = spec.simulation() else {
            return Err(JobError::Invalid("not a simulation job".into()));
        };
        if program.hash() != sim.program {
            return Err(JobError::Invalid(format!(
                "the job simulates program {} but was given program {}",
                sim.program,
                program.hash()
            )));
        }
        let model = crate::sim_job::Model {
            mesh: mesh.clone(),
            index: index.clone(),
            floor: sim.floor,
        };
        let budget = usize::try_from(sim.budget).unwrap_or(usize::MAX);
        let job = SimulationJob::new(
            sim.stock,
            sim.cell,
            budget,
            program,
            Some(model),
            sim.tolerance,
        )
        .map_err(|e| JobError::Invalid(e.to_string()))?;
        if job.spec_of(sim.program).as_ref() != Some(sim) {
            return Err(JobError::Invalid(
                "the simulation's plan is not the one its program gives".into(),
            ));
        }
        let mut ctx = Self::bind(mesh, index, spec)?;
        ctx.simulation = Some(Arc::new(job));
        Ok(ctx)
    }

    /// The job of a simulation its owner planned, checked against its model: named for
    /// the pool by [`SimulationJob::spec`], with no second planning.
    pub fn of_simulation(job: SimulationJob) -> Result<Self, JobError> {
        let (Some(model), Some(sim)) = (job.model().cloned(), job.spec()) else {
            return Err(JobError::Invalid(
                "a simulation job is checked against a model".into(),
            ));
        };
        let Some(&(cutter, _)) = job.program().passes.first() else {
            return Err(JobError::Invalid("a simulation job needs a pass".into()));
        };
        let spec = JobSpec {
            mesh: model.mesh.hash(),
            cutter,
            operation: Operation::Simulate(sim),
        };
        spec.validate()?;
        let mut ctx = Self::bind(model.mesh, model.index, spec)?;
        ctx.simulation = Some(Arc::new(job));
        Ok(ctx)
    }

    /// A simulation job's plan and program.
    pub fn simulation_job(&self) -> Option<&Arc<SimulationJob>> {
        self.simulation.as_ref()
    }

    /// Gives a rest roughing job the material the earlier operations left
    /// ([`RestMaterial::trace`], for this job's levels).
    pub fn with_rest(mut self, rest: Arc<RestMaterial>) -> Result<Self, JobError> {
        let levels = match &self.spec.operation {
            Operation::Rough(r) if r.rest.is_some() => r.contours.levels.len(),
            _ => {
                return Err(JobError::Invalid(
                    "only a rest roughing operation takes the earlier operations' stock".into(),
                ));
            }
        };
        if rest.layers.len() != levels {
            return Err(JobError::Invalid(format!(
                "the rest material has {} layers for {levels} levels",
                rest.layers.len()
            )));
        }
        self.rest = Some(rest);
        Ok(self)
    }

    /// The rest material given with [`with_rest`](Self::with_rest).
    pub fn rest(&self) -> Option<&Arc<RestMaterial>> {
        self.rest.as_ref()
    }

    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    pub fn index(&self) -> &Arc<TriangleIndex> {
        &self.index
    }

    /// The job's drop-cutter, with its material allowance.
    pub fn drop_cutter(&self) -> DropCutter<'_> {
        self.contact(self.spec.floor())
    }

    /// A drop-cutter with the job's tool and allowance and the given floor.
    pub fn contact(&self, floor: f64) -> DropCutter<'_> {
        let (tool, a) = (self.spec.cutter, self.spec.allowance());
        // `new` validated the grown tool; the fallback is unreachable.
        DropCutter::with_allowance(&self.mesh, &self.index, tool, floor, a)
            .unwrap_or_else(|_| DropCutter::new(&self.mesh, &self.index, tool, floor))
    }

    /// Tip heights of the raster lines `lines`, one row of `out` per line, checking
    /// `cancel` between pieces of at most `PIECE_POINTS` points. Raster and contour lines
    /// share one band of prepared triangles, returned for their assembly; a raw drop grid
    /// prepares smaller ones and returns none. With `levels` (ascending), only which of them
    /// each point is above (see `DropCutter::sweep_classes`): all contour tracing needs.
    fn lines_heights(
        &self,
        dc: &DropCutter<'_>,
        lines: Range<usize>,
        levels: Option<&[f64]>,
        out: &mut [f64],
        cancel: &CancelToken,
    ) -> Result<Option<Band>, Cancelled> {
        let grid = self.spec.cl_grid();
        let per_line = grid.points_per_line();
        if lines.is_empty() {
            return Ok(None);
        }
        let (a0, a1, ..) = grid.frame();
        // Contour refinement looks up to half a chord (less than a grid spacing) beyond the
        // rows; more triangles in the band never change a height.
        let m = if self.spec.contours().is_some() {
            grid.step.max(grid.sampling)
        } else {
            0.0
        };
        let r = dc.cutter().radius();
        // Tiles across all the lines, a few cutter diameters long: a line's sweep reads the
        // band's triangles near the cutter, and a tile's worth of them stays in cache for the
        // next line, where sweeping whole lines one by one would stream the band (tens of MB
        // on a fine mesh) from memory once per line. Same heights either way.
        let tile = ((4.0 * r / grid.sampling).ceil() as usize).clamp(TILE_POINTS_MIN, PIECE_POINTS);
        // A raw grid needs no band afterwards, so it prepares one per group of lines and
        // stretch along them rather than one for the chunk's whole lines: a stretch is a
        // tile (two tool diameters), so that each worker holds a few MB of prepared
        // triangles, not tens (on the 1M-triangle wavy surface at 0.1 mm, peak memory at 1 /
        // 2 / 16 threads: 3 mm ball 149 / 184 / 705 MB before, 129 / 129 / 166 after; 6 mm
        // flat 162 / 210 / 710 before, 129 / 138 / 312 after, in the same time), and lines
        // or points farther apart than the tool's width share no triangle, so each gets a
        // band of its own (a sparse grid paid for the whole mesh between them). Raster and
        // contour chunks keep one band over all their lines: their assembly and the slicer
        // use it afterwards. More or fewer triangles in a band never change a height.
        let raw = levels.is_none() && matches!(self.spec.operation, Operation::Drop(_));
        let apart = 2.0 * r * (1.0 + 1e-6);
        let group = if raw && grid.step > apart {
            1
        } else {
            lines.len()
        };
        let stretch = match (raw, grid.sampling > apart) {
            (false, _) => per_line,
            (true, true) => 1,
            (true, false) => tile,
        };
        let mut band = None;
        let rows = out.chunks_mut(per_line * group);
        for (out, first_line) in rows.zip(lines.clone().step_by(group)) {
            let lines = first_line..(first_line + group).min(lines.end);
            let across = (grid.across(lines.start) - m, grid.across(lines.end - 1) + m);
            for s0 in (0..per_line).step_by(stretch) {
                let s1 = (s0 + stretch).min(per_line);
                let along = if stretch >= per_line {
                    (a0 - m, a1.max(grid.along(per_line - 1)) + m)
                } else {
                    (grid.along(s0) - m, grid.along(s1 - 1) + m)
                };
                // The stretch before is done with: free its band before preparing the next.
                drop(band.take());
                let b = dc.band(grid.axis, across, along);
                for first in (s0..s1).step_by(tile) {
                    let end = (first + tile).min(s1);
                    for (row, j) in out.chunks_mut(per_line).zip(lines.clone()) {
                        if cancel.is_cancelled() {
                            return Err(Cancelled);
                        }
                        let (across, piece) = (grid.across(j), &mut row[first..end]);
                        match levels {
                            Some(l) => {
                                dc.sweep_classes(&b, across, a0, grid.sampling, first, piece, l)
                            }
                            None => dc.sweep(&b, across, a0, grid.sampling, first, piece),
                        }
                    }
                }
                band = Some(b);
            }
        }
        // A raw grid's caller wants no band (and only its last stretch's would be left).
        Ok(band.filter(|_| !raw))
    }

    /// The contour pieces, per level, of the cells between grid rows `lines` (a chunk's rows;
    /// the cells reach one row further, into the next chunk's first row).
    fn contour_pieces(
        &self,
        dc: &DropCutter<'_>,
        spec: &ContourSpec,
        lines: Range<usize>,
        cancel: &CancelToken,
    ) -> Result<Vec<Vec<Chain>>, Cancelled> {
        let per_line = self.spec.cl_grid().points_per_line();
        // Cell rows of this chunk, and the grid rows they span (one more).
        let last = self.spec.cl_grid().lines() - 1;
        let cells = lines.start..lines.end.min(last);
        let rows = lines.start..(cells.end + 1).min(last + 1);
        let mut z = vec![0.0; rows.len() * per_line];
        let mut sorted = spec.levels.clone();
        sorted.sort_by(f64::total_cmp);
        let band = self.lines_heights(dc, rows.clone(), Some(&sorted), &mut z, cancel)?;
        let mut levels = Vec::with_capacity(spec.levels.len());
        if let Some(band) = band.filter(|_| !cells.is_empty()) {
            let slicer = waterline::Slicer {
                dc,
                band: &band,
                grid: self.spec.cl_grid(),
                first_row: rows.start,
                heights: &z,
            };
            let crossed = slicer.crossed_cells(cells.clone(), &sorted);
            for &level in &spec.levels {
                if cancel.is_cancelled() {
                    return Err(Cancelled);
                }
                let s = sorted.partition_point(|&z| z < level);
                levels.push(slicer.level(&crossed[s], cells.clone(), level));
            }
        } else {
            levels.resize(spec.levels.len(), Vec::new());
        }
        Ok(levels)
    }

    /// Computes chunk `c`: a pure function of (mesh, spec, c).
    pub fn run_chunk(&self, c: u32, cancel: &CancelToken) -> Result<ChunkResult, Cancelled> {
        if let Some(sim) = &self.simulation {
            return Ok(ChunkResult {
                chunk: c,
                data: ChunkData::Stock(sim.run_chunk(c, cancel)?),
            });
        }
        let lines = self.spec.chunk_lines(c);
        let per_line = self.spec.cl_grid().points_per_line();
        let dc = self.drop_cutter();
        if let Some(spec) = self.spec.contours() {
            let levels = self.contour_pieces(&dc, spec, lines, cancel)?;
            return Ok(ChunkResult {
                chunk: c,
                data: ChunkData::Chains(levels),
            });
        }
        let mut z = vec![0.0; lines.len() * per_line];
        let band = self.lines_heights(&dc, lines.clone(), None, &mut z, cancel)?;
        let data = match &self.spec.operation {
            Operation::Drop(_) => ChunkData::Heights(z),
            Operation::Contours(_)
            | Operation::Waterline(_)
            | Operation::Rough(_)
            | Operation::Simulate(_) => {
                unreachable!("contour operations and simulations returned above")
            }
            Operation::Raster(r) => {
                let mut polylines = Vec::with_capacity(lines.len());
                for (row, j) in z.chunks(per_line).zip(lines) {
                    if cancel.is_cancelled() {
                        return Err(Cancelled);
                    }
                    polylines.push(raster::line_polyline(
                        &dc,
                        band.as_ref(),
                        r,
                        j,
                        row,
                        cancel,
                    )?);
                }
                ChunkData::Polylines(polylines)
            }
        };
        Ok(ChunkResult { chunk: c, data })
    }

    /// What a finished chunk looks like in model space: see [`JobSpec::preview`].
    pub fn preview(&self, result: &ChunkResult) -> Vec<Vec<Point3>> {
        self.spec.preview(result)
    }

    /// Puts results in chunk order and builds the output. Every chunk must be present once;
    /// each result is validated first.
    pub fn finish(&self, mut results: Vec<ChunkResult>) -> Result<JobOutput, JobError> {
        let n = self.spec.chunk_count();
        // Checked side by side: a large job's results are millions of points.
        results
            .par_iter()
            .try_for_each(|r| r.validate(&self.spec))?;
        results.sort_by_key(|r| r.chunk);
        results.dedup_by_key(|r| r.chunk);
        if results.len() != n as usize {
            return Err(JobError::BadResult(format!(
                "{} of {n} chunks present",
                results.len()
            )));
        }
        match &self.spec.operation {
            Operation::Simulate(_) => Ok(JobOutput::Stock(
                results
                    .into_iter()
                    .filter_map(|r| match r.data {
                        ChunkData::Stock(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            )),
            Operation::Drop(_) => {
                let mut all = Vec::with_capacity(self.spec.cl_grid().points() as usize);
                for r in results {
                    if let ChunkData::Heights(z) = r.data {
                        all.extend_from_slice(&z);
                    }
                }
                Ok(JobOutput::Heights(all))
            }
            Operation::Raster(spec) => {
                let lines: Vec<Vec<Point3>> = results
                    .into_iter()
                    .flat_map(|r| match r.data {
                        ChunkData::Polylines(p) => p,
                        _ => Vec::new(),
                    })
                    .collect();
                let model = self.contact(f64::NEG_INFINITY);
                Ok(JobOutput::Toolpath(raster::link(&model, spec, &lines)))
            }
            Operation::Contours(_) | Operation::Waterline(_) | Operation::Rough(_) => {
                let chunks = results.into_iter().map(|r| r.data.into_chains()).collect();
                let levels = self.spec.contours().map_or(&[][..], |c| &c.levels[..]);
                let levels = waterline::assemble(levels, chunks)?;
                let (model, tool) = (self.contact(f64::NEG_INFINITY), self.spec.cutter);
                match &self.spec.operation {
                    Operation::Waterline(w) => Ok(JobOutput::Toolpath(waterline::toolpath(
                        &model, tool, w, &levels,
                    ))),
                    Operation::Rough(r) => {
                        let rest = match (r.rest, &self.rest) {
                            (None, _) => None,
                            (Some(_), Some(m)) => Some(&**m),
                            (Some(_), None) => {
                                return Err(JobError::Invalid(
                                    "rest roughing needs the stock the earlier operations \
                                     left: simulate them first"
                                        .into(),
                                ));
                            }
                        };
                        Ok(JobOutput::Toolpath(crate::rough::toolpath(
                            &model, tool, r, &levels, rest,
                        )))
                    }
                    _ => Ok(JobOutput::Contours(levels)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::Axis;
    use crate::geom::Rect;
    use crate::models;
    use crate::raster::Direction;

    fn sphere() -> (Arc<Mesh>, Arc<TriangleIndex>) {
        let tris = models::geodesic_sphere(Point3::new(0.0, 0.0, 0.0), 10.0, 4);
        let mesh = Mesh::from_triangles(tris, "sphere").expect("a sphere is a valid mesh");
        let index = TriangleIndex::new(&mesh);
        (Arc::new(mesh), Arc::new(index))
    }

    fn grid(step: f64) -> Grid {
        Grid {
            axis: Axis::X,
            bounds: Rect::new(-14.0, 14.0, -14.0, 14.0),
            step,
            sampling: 0.5,
        }
    }

    fn context(operation: Operation) -> JobContext {
        let (mesh, index) = sphere();
        let spec = JobSpec {
            mesh: mesh.hash(),
            cutter: Cutter::Ball { diameter: 4.0 },
            operation,
        };
        JobContext::new(mesh, index, spec).expect("a valid job")
    }

    /// The contours of a job do not depend on where its chunks' rows are cut: the same
    /// levels, loop for loop and point for point, from one chunk of every row, from chunks of
    /// one, two, three and seven rows. Where a loop starts (a waterline pass's seam) and the
    /// order of the loops are the loops' own, not the first chunk's that holds a piece of
    /// them. Two models: the bundled part (a dome, a boss and a pocket) and CAD blocks with
    /// integer coordinates sliced exactly at their top faces' heights, where whether a grid
    /// point stands above the level is a tie that chunks sharing a row must settle alike.
    #[test]
    fn contours_are_the_same_however_the_rows_are_split() {
        let blocks = [
            models::box_solid(Point3::new(0.0, 0.0, 0.0), Point3::new(60.0, 40.0, 4.0)),
            models::box_solid(Point3::new(0.0, 0.0, 4.0), Point3::new(60.0, 4.0, 10.0)),
            models::box_solid(Point3::new(0.0, 6.0, 4.0), Point3::new(34.0, 8.0, 10.0)),
            models::box_solid(Point3::new(36.0, 26.0, 10.0), Point3::new(38.0, 36.0, 24.0)),
        ]
        .concat();
        let cases = [
            (
                models::default_part(),
                Cutter::Flat { diameter: 4.0 },
                0.7,
                vec![20.0, 13.5, 9.0, 6.0],
            ),
            (
                blocks,
                Cutter::Ball { diameter: 3.0 },
                0.2,
                vec![24.0, 10.0, 4.0],
            ),
        ];
        for (tris, cutter, sampling, levels) in cases {
            let mesh = Arc::new(Mesh::from_triangles(tris, "part").unwrap());
            let index = Arc::new(TriangleIndex::new(&mesh));
            let grid = ContourSpec::grid_around(mesh.bounds().xy(), cutter.radius(), sampling);
            let contours = ContourSpec {
                grid: grid.unwrap(),
                levels,
                allowance: 0.0,
            };
            let spec = JobSpec {
                mesh: mesh.hash(),
                cutter,
                operation: Operation::Contours(contours.clone()),
            };
            let ctx = JobContext::new(mesh, index, spec).unwrap();
            let dc = ctx.drop_cutter();
            let lines = contours.grid.lines();
            let split = |per: usize| {
                let cancel = CancelToken::new();
                let pieces = (0..lines)
                    .step_by(per)
                    .map(|a| {
                        let rows = a..(a + per).min(lines);
                        ctx.contour_pieces(&dc, &contours, rows, &cancel).unwrap()
                    })
                    .collect();
                waterline::assemble(&contours.levels, pieces)
            };
            let whole = split(lines).unwrap();
            let loops: usize = whole.iter().map(|l| l.contours.len()).sum();
            assert!(loops >= 3, "the levels have loops: {loops}");
            for per in [1, 2, 3, 7] {
                assert_eq!(
                    split(per).as_ref(),
                    Ok(&whole),
                    "{cutter}: chunks of {per} rows"
                );
            }
        }
    }

    /// A spec whose grid is one line of a billion points (within `MAX_POINTS`) is refused
    /// before anything is planned: as one chunk it would take 8 GB on a worker.
    #[test]
    fn a_one_line_billion_point_spec_is_refused() {
        let spec = |xmax: f64| JobSpec {
            mesh: MeshHash([0; 32]),
            cutter: Cutter::Ball { diameter: 4.0 },
            operation: Operation::Drop(DropSpec {
                grid: Grid {
                    axis: Axis::X,
                    bounds: Rect::new(0.0, xmax, 0.0, 0.0),
                    step: 1.0,
                    sampling: 0.1,
                },
                floor: 0.0,
            }),
        };
        let e = spec(9.999e7)
            .validate()
            .expect_err("one line of 1e9 points");
        assert!(matches!(e, JobError::Invalid(_)), "{e:?}");
        assert!(e.to_string().contains("limit is 1048576"), "{e}");
        spec(1e3).validate().expect("a line of 10 001 points");
    }

    /// A terrain relief for drop grids.
    fn relief() -> (Arc<Mesh>, Arc<TriangleIndex>) {
        let tris = models::terrain_relief(80);
        let mesh = Arc::new(Mesh::from_triangles(tris, "relief").unwrap());
        let index = Arc::new(TriangleIndex::new(&mesh));
        (mesh, index)
    }

    /// A dense drop grid, whose lines are swept a stretch of bands at a time, gives the
    /// heights single-point drops give (no triangle lost at a stretch's end).
    #[test]
    fn drop_grids_in_stretches_give_the_single_point_heights() {
        let (grid, z) = relief_heights(1.5, 0.25);
        let per = grid.points_per_line();
        assert!(
            per as f64 * 0.25 > 4.0 * 4.0 * 1.5,
            "several stretches per line"
        );
        let (mesh, index) = relief();
        let dc = DropCutter::new(&mesh, &index, Cutter::Ball { diameter: 3.0 }, -1.0);
        for (j, row) in z.chunks(per).enumerate() {
            for (i, h) in row.iter().enumerate() {
                let p = grid.point(j, i, 0.0);
                let want = dc.at(p.x, p.y);
                assert!(
                    (h - want).abs() < 1e-9,
                    "line {j}, point {i}: {h} vs {want}"
                );
            }
        }
    }

    /// The heights of a drop grid over a terrain relief with a 3 mm ball, every chunk run.
    fn relief_heights(step: f64, sampling: f64) -> (Grid, Vec<f64>) {
        let (mesh, index) = relief();
        let grid = Grid {
            axis: Axis::X,
            bounds: Rect::new(3.0, 115.0, 2.0, 86.0),
            step,
            sampling,
        };
        let spec = JobSpec {
            mesh: mesh.hash(),
            cutter: Cutter::Ball { diameter: 3.0 },
            operation: Operation::Drop(DropSpec { grid, floor: -1.0 }),
        };
        let ctx = JobContext::new(mesh, index, spec).unwrap();
        let cancel = CancelToken::new();
        let results = (0..ctx.spec().chunk_count())
            .map(|c| ctx.run_chunk(c, &cancel).unwrap())
            .collect();
        match ctx.finish(results).unwrap() {
            JobOutput::Heights(z) => (grid, z),
            _ => unreachable!(),
        }
    }

    /// A sparse grid (lines, or points, farther apart than the tool) is computed a line or a
    /// point at a time, with the heights a dense grid gives at the same places.
    #[test]
    fn sparse_grids_give_the_dense_grids_heights() {
        let (dense_grid, dense) = relief_heights(1.0, 0.5);
        let per_dense = dense_grid.points_per_line();
        // Lines 4 mm apart (each its own band), points 0.5 mm apart: every 4th dense line.
        let (grid, lines) = relief_heights(4.0, 0.5);
        let per = grid.points_per_line();
        assert_eq!(per, per_dense);
        for (j, row) in lines.chunks(per).enumerate() {
            let want = &dense[4 * j * per_dense..(4 * j + 1) * per_dense];
            for (i, (a, b)) in row.iter().zip(want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "line {j}, point {i}");
            }
        }
        // Points 4 mm apart too (a band each): every 8th dense point of those lines.
        let (grid, points) = relief_heights(4.0, 4.0);
        let per = grid.points_per_line();
        for (j, row) in points.chunks(per).enumerate() {
            for (i, z) in row.iter().enumerate() {
                let want = dense[4 * j * per_dense + 8 * i];
                assert_eq!(z.to_bits(), want.to_bits(), "line {j}, point {i}");
            }
        }
    }

    /// Every chunk's preview is made of its own CL points: raster lines as computed, drop
    /// rows at their heights, contour pieces at their level's height.
    #[test]
    fn previews_show_each_chunk_where_the_tool_goes() {
        let raster = context(Operation::Raster(RasterSpec {
            grid: grid(0.01),
            floor: -10.0,
            safe_z: 15.0,
            links: crate::links::Links::at_safe_height(15.0),
            direction: Direction::Zigzag,
            merge_tolerance: raster::DEFAULT_MERGE_TOLERANCE,
            allowance: 0.0,
        }));
        assert!(raster.spec().chunk_count() > 1);
        let cancel = CancelToken::new();
        let r = raster.run_chunk(1, &cancel).unwrap();
        let ChunkData::Polylines(lines) = &r.data else {
            panic!("raster chunks are polylines")
        };
        assert_eq!(&raster.preview(&r), lines);

        let drop = context(Operation::Drop(DropSpec {
            grid: grid(0.05),
            floor: -10.0,
        }));
        let r = drop.run_chunk(0, &cancel).unwrap();
        let ChunkData::Heights(z) = &r.data else {
            panic!("drop chunks are heights")
        };
        let preview = drop.preview(&r);
        let g = drop.spec().grid().unwrap();
        assert_eq!(preview.len(), drop.spec().chunk_lines(0).len());
        assert!(preview.iter().all(|l| l.len() == g.points_per_line()));
        assert_eq!(preview[1][3], g.point(1, 3, z[g.points_per_line() + 3]));

        let levels = vec![5.0, -2.0];
        let contours = context(Operation::Contours(ContourSpec {
            grid: grid(0.5),
            levels: levels.clone(),
            allowance: 0.0,
        }));
        let mut pieces = 0;
        for c in 0..contours.spec().chunk_count() {
            let r = contours.run_chunk(c, &cancel).unwrap();
            let ChunkData::Chains(chains) = &r.data else {
                panic!("contour chunks are chains")
            };
            let preview = contours.preview(&r);
            let mut want = Vec::new();
            for (chains, &z) in chains.iter().zip(&levels) {
                for chain in chains {
                    want.push((chain.points.clone(), z));
                }
            }
            assert_eq!(preview.len(), want.len());
            for (line, (points, z)) in preview.iter().zip(&want) {
                assert_eq!(line.len(), points.len());
                for (p, q) in line.iter().zip(points) {
                    assert_eq!((p.x, p.y, p.z), (q[0], q[1], *z));
                }
            }
            pieces += preview.len();
        }
        assert!(pieces > 0, "the sphere crosses both levels");
    }
}
