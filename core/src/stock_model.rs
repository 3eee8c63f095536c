//! What is left of the stock: a height field (Z-map) over the stock's XY box, lowered by
//! every move of a program, so that each operation knows the material it starts from, and
//! the machinist sees what the program leaves (ARCHITECTURE.md §2.2).
//!
//! Each cell holds the top of the material over its centre. A move lowers a cell to the
//! lowest point of the tool's surface over that centre during the move, computed exactly
//! (not by stamping the tool at sampled positions). The tool surface above a point at
//! distance `ρ` from the axis is `tip + h(ρ)`, with the profile `h` convex and
//! non-decreasing (see [`crate::cutter`]). Along a straight move, measured by `w` from the
//! foot of the perpendicular from the cell centre to the move, the tip is at `z_f + m·w`
//! and the surface over the cell at `z_f + m·w + h(sqrt(d² + w²))`: minimising it is
//! maximising `(-m)·w - h(sqrt(d² + w²))`, which is exactly the drop-cutter's contact with
//! a straight edge of slope `-m` ([`Shape::edge_contact`]) — closed form for flat, ball and
//! V-bit, a safeguarded Newton iteration for the bull nose, the same code the toolpaths are
//! computed with.
//!
//! Heights are kept as `f32` offsets below the uncut top (4 bytes a cell: a 200 × 170 mm
//! stock at 0.05 mm is 54 MB): each is the exact height rounded once, within 4 nm on a
//! 100 mm block, far below any machining tolerance. The cells are stored in square tiles so
//! that tiles can be machined on separate threads, each applying in program order the moves
//! that reach it: the height of a cell is the minimum over the moves, so the result does not
//! depend on how the tiles are shared out.
//!
//! A raster line's moves (along X or Y, each carrying on from the one before) are machined
//! as one chain per tile (`Grid::apply_chain`): each cell is lowered once, to the lowest
//! tool of the chain over it, and the material it lost counts for the move that went lowest
//! there. So within a chain a move's depth of cut is how much material stood, before the
//! line, above where that move left the cell — the whole engagement of the line where the
//! move finished it, rather than the sliver each 0.1 mm step adds at the tool's front; the
//! removed volume is the same, and so is every cell's height.

use crate::cutter::{Cutter, Profile, Shape};
use crate::geom::{Aabb, Point3};
use crate::raster::FEED_CLEARANCE;
use crate::toolpath::{Move, MoveKind, Toolpath};
use crate::with_shape;
use rayon::prelude::*;
use std::ops::Range;
use thiserror::Error;

/// Most cells a stock model may have at all (256 M cells, 1 GiB of heights).
pub const MAX_CELLS: usize = 1 << 28;

/// Cells the program check ([`check_program`]) uses at most (16 M cells, 64 MiB): it runs on
/// every export, so a large stock gets coarser cells rather than a long wait.
pub const CHECK_CELLS: usize = 1 << 24;

/// Cells per side of a tile (64 KiB of heights: one tile's cells stay in a core's cache
/// while the moves that reach it are applied).
pub const TILE: usize = 128;

/// Moves machined together, the tiles on all threads: enough for every thread to have tiles
/// to work on, few enough that the per-move figures of a batch stay small (a few MB).
pub const BATCH_MOVES: usize = 1 << 16;

/// Material thinner than this is not counted as material a move meets, mm: rounding in the
/// cell heights and the moves' own coordinates stays below it.
pub const MATERIAL_TOLERANCE: f64 = 1e-3;

/// Why a stock model cannot be made.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum StockModelError {
    #[error("the stock box is empty or not finite")]
    EmptyStock,
    #[error("the cell size must be a positive number of millimetres, got {0}")]
    Cell(f64),
    #[error(
        "{cells} cells of {cell} mm would need {mib} MiB, more than the {budget} MiB allowed: choose a coarser cell or a larger memory budget"
    )]
    TooManyCells {
        cells: usize,
        cell: f64,
        mib: usize,
        budget: usize,
    },
}

/// A square block of cells, stored row by row.
#[derive(Clone, Debug, PartialEq)]
struct Tile {
    /// The tile's first cell in the whole grid.
    i0: usize,
    j0: usize,
    /// Cells along X and Y (`TILE`, less at the grid's far edges).
    w: usize,
    h: usize,
    /// Height of each cell below `StockModel::reference`, mm.
    heights: Vec<f32>,
}

/// Where the cells are.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Grid {
    /// Centre of cell (0, 0).
    x0: f64,
    y0: f64,
    cell: f64,
    nx: usize,
    ny: usize,
    bottom: f64,
    /// The uncut top: heights are stored relative to it.
    reference: f64,
}

/// The material left of a stock block, as a height per cell.
#[derive(Clone, Debug, PartialEq)]
pub struct StockModel {
    g: Grid,
    /// Cells along each side of a tile (the last row and column of tiles may be shorter).
    tile: usize,
    /// Tiles along X.
    tx: usize,
    tiles: Vec<Tile>,
    /// How each batch's work divided over its tiles, when asked ([`StockModel::profile_work`]).
    profile: WorkProfile,
}

/// How one batch of moves divided into work that runs side by side: its tiles, each timed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BatchWork {
    /// Tiles the batch reached: the pieces its threads share.
    pub tiles: usize,
    /// Seconds of all its tiles, and of the longest.
    pub total_s: f64,
    pub largest_s: f64,
}

/// The batches' work, kept only while profiling (the benchmark's largest-piece share: how far
/// the simulator could scale on more cores than this machine has). Not part of the stock:
/// two stocks with the same heights are equal whatever was timed.
#[derive(Clone, Debug, Default)]
struct WorkProfile(Option<Vec<BatchWork>>);

impl PartialEq for WorkProfile {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// One move of a toolpath that meets material it should not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveFinding {
    /// Index into the moves of the toolpath as posted (0-based; the G-code line is not known
    /// here).
    pub index: usize,
    pub kind: MoveKind,
    /// Where the move goes.
    pub to: Point3,
    /// How deep the tool went into material during the move, mm.
    pub depth: f64,
}
/// What one operation's moves did to the stock.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngagementReport {
    /// The deepest cut of any feed move into the material as it stood, mm.
    pub deepest_cut: f64,
    /// The first feed move deeper than the tool's maximum depth of cut.
    pub first_too_deep: Option<MoveFinding>,
    /// How many feed moves were deeper than the maximum depth of cut.
    pub too_deep_moves: usize,
    /// The first rapid move that meets material.
    pub first_rapid_in_material: Option<MoveFinding>,
    /// How many rapid moves meet material.
    pub rapids_in_material: usize,
}

impl EngagementReport {
    /// True when nothing needs the machinist's attention.
    pub fn is_clean(&self) -> bool {
        self.first_too_deep.is_none() && self.first_rapid_in_material.is_none()
    }

    /// The warnings for an operation named `operation`, in a machinist's words (empty when
    /// clean).
    pub fn warnings(&self, operation: &str, max_depth_of_cut: f64) -> Vec<String> {
        let mut w = Vec::new();
        let at = |p: Point3| format!("X{:.3} Y{:.3} Z{:.3}", p.x, p.y, p.z);
        if let Some(f) = self.first_too_deep {
            w.push(format!(
                "{operation}: move {} (to {}) cuts {:.2} mm deep into the stock as it stands, \
                 more than the tool's maximum depth of cut ({:.2} mm); {} move{} in all. Rough \
                 the part first, or lower the stock top.",
                f.index + 1,
                at(f.to),
                f.depth,
                max_depth_of_cut,
                self.too_deep_moves,
                if self.too_deep_moves == 1 { "" } else { "s" },
            ));
        }
        if let Some(f) = self.first_rapid_in_material {
            w.push(format!(
                "{operation}: rapid move {} (to {}) meets material {:.2} mm deep; {} rapid{} \
                 in all.",
                f.index + 1,
                at(f.to),
                f.depth,
                self.rapids_in_material,
                if self.rapids_in_material == 1 {
                    ""
                } else {
                    "s"
                },
            ));
        }
        w
    }
}

/// A sensible maximum depth of cut for a tool, mm, when the user has given none: what its
/// cutting edges reach. Two diameters for end mills, ball and bull noses (a usual flute
/// length for small cutters: deeper, the shank rubs and chips pack); the cone's height for a
/// V-bit. This is the bar for a tool buried in material — a finishing pass run into uncut
/// stock — not a feeds-and-speeds recommendation.
pub fn default_max_depth_of_cut(cutter: &Cutter) -> f64 {
    match cutter {
        Cutter::VBit { .. } => cutter.cutting_height(),
        _ => 2.0 * cutter.diameter(),
    }
}

/// A straight move of the tool tip from `a` to `b`, with what every cell's sweep needs
/// computed once.
#[derive(Clone, Copy, Debug)]
pub struct SweptMove {
    a: Point3,
    b: Point3,
    /// Unit horizontal direction and horizontal length (0 for a vertical move).
    ux: f64,
    uy: f64,
    len: f64,
    /// Rise per unit of horizontal travel.
    slope: f64,
    /// `Shape::edge_constant(-slope)`.
    c: f64,
    r: f64,
    r2: f64,
    /// The XY box the tool sweeps.
    lo: (f64, f64),
    hi: (f64, f64),
    /// The move starts where one just applied with the same tool ended: the tool at the
    /// start has been applied to every cell already.
    start_covered: bool,
    /// Cells cut deeper than this count towards [`TileHit::deep`].
    deep_at: f64,
}

impl SweptMove {
    pub fn new<S: Shape>(shape: &S, a: Point3, b: Point3) -> Self {
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len = dx.hypot(dy);
        let (ux, uy, slope) = if len > 0.0 {
            (dx / len, dy / len, (b.z - a.z) / len)
        } else {
            (0.0, 0.0, 0.0)
        };
        let r = shape.radius();
        Self {
            a,
            b,
            ux,
            uy,
            len,
            slope,
            c: shape.edge_constant(-slope),
            r,
            r2: r * r,
            lo: (a.x.min(b.x) - r, a.y.min(b.y) - r),
            hi: (a.x.max(b.x) + r, a.y.max(b.y) + r),
            start_covered: false,
            deep_at: f64::INFINITY,
        }
    }

    /// A move with a length along X or Y only: [`Grid::apply_chain`]'s.
    fn is_along_axis(&self) -> bool {
        self.len > 0.0 && (self.ux == 0.0 || self.uy == 0.0)
    }

    /// This move, along X or Y, carries on from `before` in a chain ([`Grid::apply_chain`]):
    /// it starts where `before` ended, along the same line in the same direction.
    fn continues(&self, before: &SweptMove) -> bool {
        self.is_along_axis()
            && self.start_covered
            && self.a == before.b
            && self.ux == before.ux
            && self.uy == before.uy
            && if self.uy == 0.0 {
                self.a.y == before.a.y
            } else {
                self.a.x == before.a.x
            }
    }

    /// The lowest height of the tool's surface over `(x, y)` during the move, when it is
    /// below `top`; `None` when the tool never reaches over the point or stays above `top`.
    #[inline]
    pub fn lowest_below<S: Shape>(&self, shape: &S, x: f64, y: f64, top: f64) -> Option<f64> {
        let (px, py) = (x - self.a.x, y - self.a.y);
        if self.len == 0.0 {
            let rho2 = px * px + py * py;
            if rho2 > self.r2 {
                return None;
            }
            let z = self.a.z.min(self.b.z) + shape.height_sq(rho2);
            return (z < top).then_some(z);
        }
        // Along the move from `a`, and across it.
        let t = px * self.ux + py * self.uy;
        let d = px * self.uy - py * self.ux;
        let d2 = d * d;
        let near = t - t.clamp(0.0, self.len);
        let near2 = near * near + d2;
        if near2 > self.r2 {
            return None;
        }
        // Never below the lowest tip plus the profile at the nearest approach: most cells of
        // a fine raster, already cut by the moves before, stop here. The profile itself, not
        // a cheaper lower bound: the cells behind a level move were cut to exactly that by
        // the move before, and only the exact height lets them stop here.
        if self.a.z.min(self.b.z) + shape.height_sq(near2) >= top {
            return None;
        }
        let s2 = self.r2 - d2;
        let half = s2.max(0.0).sqrt();
        let lo = (-t).max(-half);
        let hi = (self.len - t).min(half);
        let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, hi) };
        let (w, h) = shape.edge_contact(-self.slope, self.c, d2, s2, lo, hi);
        let z = self.a.z + self.slope * (t + w) + h;
        (z < top).then_some(z)
    }

    /// The cells' X range in the row at height `y` that the tool can reach: a superset of
    /// the swept disk's cross-section, exact for moves along an axis. `None` when the row is
    /// out of reach.
    #[inline]
    fn row_reach(&self, y: f64) -> Option<(f64, f64)> {
        let (a, b) = (self.a, self.b);
        let (ya, yb) = (y - a.y, y - b.y);
        let (t0, t1) = if a.y == b.y {
            if ya.abs() > self.r {
                return None;
            }
            (0.0, 1.0)
        } else {
            let dy = b.y - a.y;
            let (u, v) = ((ya - self.r) / dy, (ya + self.r) / dy);
            let (u, v) = (u.min(v).max(0.0), u.max(v).min(1.0));
            if u > v {
                return None;
            }
            (u, v)
        };
        let dmin = if ya * yb <= 0.0 {
            0.0
        } else {
            ya.abs().min(yb.abs())
        };
        let half = (self.r2 - dmin * dmin).max(0.0).sqrt();
        let (xa, xb) = (a.x + t0 * (b.x - a.x), a.x + t1 * (b.x - a.x));
        // A hair wider: the cells themselves decide, exactly, whether the tool reaches them.
        let slack = 1e-9 * (1.0 + half + xa.abs().max(xb.abs()));
        Some((xa.min(xb) - half - slack, xa.max(xb) + half + slack))
    }
}

/// What one move did to the cells of one tile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileHit {
    /// The move's index in the batch.
    pub index: u32,
    /// The deepest material the move met: how far the material stood above the tool (in a
    /// chain of a raster line, before the line, over the cells this move left lowest).
    pub depth: f64,
    /// Material removed, mm³.
    pub removed: f64,
    /// The extent, across the move (along X for a vertical move), of the cells it lowered
    /// by more than [`MATERIAL_TOLERANCE`]; `lo > hi` when none.
    pub across: (f64, f64),
    /// The same extent of the cells it cut deeper than the batch's `deep_at`.
    pub deep: (f64, f64),
}

impl TileHit {
    pub(crate) fn empty(index: u32) -> Self {
        Self {
            index,
            depth: 0.0,
            removed: 0.0,
            across: (f64::INFINITY, f64::NEG_INFINITY),
            deep: (f64::INFINITY, f64::NEG_INFINITY),
        }
    }

    /// Combines what one move did in two tiles.
    pub fn merge(&mut self, o: &TileHit) {
        self.depth = self.depth.max(o.depth);
        self.removed += o.removed;
        self.across = (self.across.0.min(o.across.0), self.across.1.max(o.across.1));
        self.deep = (self.deep.0.min(o.deep.0), self.deep.1.max(o.deep.1));
    }

    /// Counts one cell lowered by `depth` (0 for a cell left as it was) at `across` from the
    /// move's line: a line of one cell ([`RowCut::add_to`] is the one rule).
    #[inline]
    fn add_cut(&mut self, depth: f64, area: f64, across: f64, deep_at: f64) {
        RowCut { depth, sum: depth }.add_to(self, area, across, deep_at);
    }

    /// How wide the cut was, mm (between the outermost lowered cells' centres).
    pub fn width(&self) -> f64 {
        (self.across.1 - self.across.0).max(0.0)
    }

    /// How wide the part cut deeper than `deep_at` was, mm.
    pub fn deep_width(&self) -> f64 {
        (self.deep.1 - self.deep.0).max(0.0)
    }
}

impl StockModel {
    /// A cell size for this stock and the smallest tool that will cut it: `fraction` of its
    /// radius, coarser only where the stock would need more than `max_cells`.
    pub fn cell_for(
        stock: Aabb,
        smallest_tool_radius: f64,
        fraction: f64,
        max_cells: usize,
    ) -> f64 {
        let (w, d) = (stock.max.x - stock.min.x, stock.max.y - stock.min.y);
        let fine = (smallest_tool_radius * fraction).max(1e-3);
        let budget = (w * d / max_cells as f64).sqrt() * 1.01;
        fine.max(budget)
    }

    /// The program check's cell size: a tenth of the smallest tool's radius, as `millpond
    /// simulate` uses by default, within [`CHECK_CELLS`]. At a quarter radius the check
    /// missed a sliver of stock 0.1 mm wide and 14 mm tall left between a waterline's
    /// contours on uncut stock, and stopped a straight-down rapid above the cells, through
    /// the sliver (a buried cut is judged by its width as well, [`BURIED_SHARE`], so that
    /// fine cells do not call a wall's allowance skin a buried tool).
    pub fn default_cell(stock: Aabb, smallest_tool_radius: f64) -> f64 {
        Self::cell_for(stock, smallest_tool_radius, 0.1, CHECK_CELLS)
    }

    /// The uncut block `stock`, in cells of `cell` mm, within [`MAX_CELLS`].
    pub fn new(stock: Aabb, cell: f64) -> Result<Self, StockModelError> {
        Self::with_budget(stock, cell, MAX_CELLS * 4)
    }

    /// Cells along X and Y of `stock` at `cell` mm, and the bytes their heights take.
    pub fn cells_of(stock: Aabb, cell: f64) -> Result<(usize, usize, usize), StockModelError> {
        if stock.is_empty() || !(stock.min.is_finite() && stock.max.is_finite()) {
            return Err(StockModelError::EmptyStock);
        }
        if !(cell.is_finite() && cell > 0.0) {
            return Err(StockModelError::Cell(cell));
        }
        let count = |len: f64| ((len / cell).ceil().min(1e12) as usize).max(1);
        let (nx, ny) = (
            count(stock.max.x - stock.min.x),
            count(stock.max.y - stock.min.y),
        );
        Ok((nx, ny, nx.saturating_mul(ny).saturating_mul(4)))
    }

    /// As [`new`](Self::new), refusing a model whose heights need more than `budget` bytes.
    pub fn with_budget(stock: Aabb, cell: f64, budget: usize) -> Result<Self, StockModelError> {
        Self::with_tiles(stock, cell, budget, TILE)
    }

    /// As [`with_budget`](Self::with_budget), in tiles of `tile` cells a side (8 to [`TILE`]).
    pub fn with_tiles(
        stock: Aabb,
        cell: f64,
        budget: usize,
        tile: usize,
    ) -> Result<Self, StockModelError> {
        Self::build(stock, cell, budget, tile, 0..usize::MAX)
    }

    /// The tiles `part` (in tile order: along X, then Y) of the stock `stock` in cells of
    /// `cell` mm and tiles of [`TILE`], alone: what one chunk of a simulation job machines
    /// ([`crate::sim_job`]). The other tiles have no cells, and nothing may touch them.
    pub(crate) fn part(
        stock: Aabb,
        cell: f64,
        budget: usize,
        part: std::ops::Range<usize>,
    ) -> Result<Self, StockModelError> {
        Self::build(stock, cell, budget, TILE, part)
    }

    fn build(
        stock: Aabb,
        cell: f64,
        budget: usize,
        tile: usize,
        part: std::ops::Range<usize>,
    ) -> Result<Self, StockModelError> {
        let tile = tile.clamp(8, TILE);
        let (nx, ny, bytes) = Self::cells_of(stock, cell)?;
        let cells = nx.saturating_mul(ny);
        if bytes > budget || cells > MAX_CELLS {
            return Err(StockModelError::TooManyCells {
                cells,
                cell,
                mib: bytes >> 20,
                budget: budget.min(MAX_CELLS * 4) >> 20,
            });
        }
        let tx = nx.div_ceil(tile);
        let ty = ny.div_ceil(tile);
        let mut tiles = Vec::with_capacity(tx * ty);
        for tj in 0..ty {
            for ti in 0..tx {
                let (i0, j0) = (ti * tile, tj * tile);
                let (w, h) = (tile.min(nx - i0), tile.min(ny - j0));
                let cells = if part.contains(&tiles.len()) {
                    w * h
                } else {
                    0
                };
                tiles.push(Tile {
                    i0,
                    j0,
                    w,
                    h,
                    heights: vec![0.0; cells],
                });
            }
        }
        Ok(Self {
            profile: WorkProfile::default(),
            tile,
            g: Grid {
                x0: stock.min.x + cell / 2.0,
                y0: stock.min.y + cell / 2.0,
                cell,
                nx,
                ny,
                bottom: stock.min.z,
                reference: stock.max.z,
            },
            tx,
            tiles,
        })
    }

    pub fn cell(&self) -> f64 {
        self.g.cell
    }

    /// Cells along X and Y.
    pub fn size(&self) -> (usize, usize) {
        (self.g.nx, self.g.ny)
    }

    /// The stock block's bottom and uncut top.
    pub fn z_range(&self) -> (f64, f64) {
        (self.g.bottom, self.g.reference)
    }

    /// Bytes the heights take.
    pub fn memory_bytes(&self) -> usize {
        self.g.nx * self.g.ny * std::mem::size_of::<f32>()
    }

    /// Top of the material over cell `(i, j)`.
    pub fn height(&self, i: usize, j: usize) -> f64 {
        let t = &self.tiles[(j / self.tile) * self.tx + i / self.tile];
        self.g.reference + t.heights[(j - t.j0) * t.w + (i - t.i0)] as f64
    }

    /// Centre of cell `(i, j)`.
    pub fn centre(&self, i: usize, j: usize) -> (f64, f64) {
        (
            self.g.x0 + i as f64 * self.g.cell,
            self.g.y0 + j as f64 * self.g.cell,
        )
    }

    /// Every cell's height, row by row (Y outer), for drawing and export.
    pub fn heights(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.g.nx * self.g.ny];
        let reference = self.g.reference as f32;
        for t in &self.tiles {
            for r in 0..t.h {
                let row = &t.heights[r * t.w..(r + 1) * t.w];
                let o = (t.j0 + r) * self.g.nx + t.i0;
                for (dst, &h) in out[o..o + t.w].iter_mut().zip(row) {
                    *dst = reference + h;
                }
            }
        }
        out
    }

    /// Calls `f(i, j, height)` for every cell, a tile at a time on all threads, and combines
    /// the tiles' results in tile order (the same whatever the thread count).
    pub fn fold_tiles<T: Send>(&self, f: impl Fn(TileCells<'_>) -> T + Sync + Send) -> Vec<T> {
        self.tiles
            .par_iter()
            .map(|t| {
                f(TileCells {
                    model: self,
                    tile: t,
                })
            })
            .collect()
    }

    /// Runs a toolpath through the stock with `cutter`, lowering the material, and reports
    /// feed moves deeper than `max_depth_of_cut` and rapids that meet material.
    pub fn machine(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
    ) -> EngagementReport {
        self.run(cutter, toolpath, max_depth_of_cut, false, &mut |_| {})
            .1
    }

    /// As [`machine`](Self::machine), but first makes every straight-down rapid stop
    /// [`FEED_CLEARANCE`] above the material under the tool, as it stands when the tool gets
    /// there, and feed the rest of the way down (a plunge): an approach that would rapid into
    /// what an earlier operation or layer left. Returns the toolpath as changed.
    pub fn machine_with_safe_descents(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
    ) -> (Toolpath, EngagementReport) {
        self.run(cutter, toolpath, max_depth_of_cut, true, &mut |_| {})
    }

    /// [`machine_with_safe_descents`](Self::machine_with_safe_descents), handing each piece
    /// of the toolpath as changed to `posted`, in order, as soon as it is final (before the
    /// tiles of its batch are machined): what follows the posted program (the time
    /// estimate) runs beside the check instead of after it.
    pub fn machine_posting(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
        posted: &mut dyn FnMut(&[Move]),
    ) -> (Toolpath, EngagementReport) {
        self.run(cutter, toolpath, max_depth_of_cut, true, posted)
    }

    fn run(
        &mut self,
        cutter: &Cutter,
        toolpath: &Toolpath,
        max_depth_of_cut: f64,
        safe_descents: bool,
        posted: &mut dyn FnMut(&[Move]),
    ) -> (Toolpath, EngagementReport) {
        let profile = cutter.profile();
        // How many of `out`'s moves were handed to `posted`: a move is final once pushed.
        let mut handed = 0;
        let mut report = EngagementReport::default();
        let mut out = Toolpath {
            start: toolpath.start,
            moves: Vec::with_capacity(if safe_descents {
                toolpath.moves.len()
            } else {
                0
            }),
        };
        // Moves are machined in batches, the tiles on all threads; only a straight-down
        // rapid needs the stock as it stands at that move, so the batch is machined first.
        let limits = Limits::new(cutter, max_depth_of_cut);
        let mut batch = Batch {
            cutter,
            limits,
            segments: Vec::new(),
            moves: Vec::new(),
            start_covered: false,
        };
        let mut at = toolpath.start;
        for (index, m) in toolpath.moves.iter().enumerate() {
            let straight_down =
                m.kind == MoveKind::Rapid && m.to.x == at.x && m.to.y == at.y && m.to.z < at.z;
            if safe_descents && straight_down {
                hand_on(&out.moves, &mut handed, posted);
                batch.flush(self, &mut report);
                let stop = self.contact_height(&profile, m.to.x, m.to.y) + FEED_CLEARANCE;
                if m.to.z < stop {
                    if at.z > stop {
                        let over = Point3::new(m.to.x, m.to.y, stop);
                        self.sweep(&profile, at, over, f64::INFINITY);
                        out.push(MoveKind::Rapid, over);
                        at = over;
                    }
                    let hit = self.sweep(&profile, at, m.to, limits.deep_at());
                    let index = out.moves.len();
                    record(&mut report, index, MoveKind::Plunge, m.to, &hit, limits);
                    out.push(MoveKind::Plunge, m.to);
                    at = m.to;
                    // The tool at `at` is applied: the next move starts there.
                    batch.start_covered = true;
                    continue;
                }
            }
            // Findings name the moves of the toolpath that is posted.
            let index = if safe_descents {
                out.moves.push(*m);
                out.moves.len() - 1
            } else {
                index
            };
            batch.segments.push((at, m.to));
            batch.moves.push((index, m.kind, m.to));
            at = m.to;
            if batch.segments.len() == BATCH_MOVES {
                hand_on(&out.moves, &mut handed, posted);
                batch.flush(self, &mut report);
            }
        }
        hand_on(&out.moves, &mut handed, posted);
        batch.flush(self, &mut report);
        (out, report)
    }

    /// The lowest tip height at `(x, y)` at which the tool touches the material left: the
    /// highest of each cell's top less the tool's surface height over it. The stock bottom
    /// where the tool meets nothing.
    pub fn contact_height(&self, profile: &Profile, x: f64, y: f64) -> f64 {
        with_shape!(profile, p => {
            let r = p.radius();
            let mut high = self.g.bottom;
            let (Some((i0, i1)), Some((j0, j1))) = (
                span(x - r, x + r, self.g.x0, self.g.cell, self.g.nx),
                span(y - r, y + r, self.g.y0, self.g.cell, self.g.ny),
            ) else {
                return high;
            };
            for j in j0..=j1 {
                let cy = self.g.y0 + j as f64 * self.g.cell;
                for i in i0..=i1 {
                    let cx = self.g.x0 + i as f64 * self.g.cell;
                    let rho2 = (cx - x).powi(2) + (cy - y).powi(2);
                    if rho2 <= r * r {
                        high = high.max(self.height(i, j) - p.height_sq(rho2));
                    }
                }
            }
            high
        })
    }

    /// Machines a toolpath one move at a time, without batches (for tests: the batched,
    /// tiled path must give the same stock).
    #[cfg(test)]
    pub(crate) fn machine_move_by_move(&mut self, cutter: &Cutter, toolpath: &Toolpath) {
        let profile = cutter.profile();
        let mut at = toolpath.start;
        for m in &toolpath.moves {
            self.sweep(&profile, at, m.to, f64::INFINITY);
            at = m.to;
        }
    }

    /// Lowers every cell under the tool moving from `a` to `b`; returns the deepest material
    /// the tool met, mm.
    fn sweep(&mut self, profile: &Profile, a: Point3, b: Point3, deep_at: f64) -> TileHit {
        with_shape!(profile, p => {
            let mv = SweptMove {
                deep_at,
                ..SweptMove::new(p, a, b)
            };
            let mut hit = TileHit::empty(0);
            let Some((t0, t1)) = self.tiles_reached(&mv) else {
                return hit;
            };
            for tj in t0.1..=t1.1 {
                for ti in t0.0..=t1.0 {
                    let tile = &mut self.tiles[tj * self.tx + ti];
                    hit.merge(&self.g.apply(tile, p, &mv, 0));
                }
            }
            hit
        })
    }

    /// The tiles a move's box reaches: `((ti0, tj0), (ti1, tj1))`.
    fn tiles_reached(&self, mv: &SweptMove) -> Option<((usize, usize), (usize, usize))> {
        let (i0, i1) = span(mv.lo.0, mv.hi.0, self.g.x0, self.g.cell, self.g.nx)?;
        let (j0, j1) = span(mv.lo.1, mv.hi.1, self.g.y0, self.g.cell, self.g.ny)?;
        let t = self.tile;
        Some(((i0 / t, j0 / t), (i1 / t, j1 / t)))
    }

    /// Starts (or stops) timing each batch's tiles ([`work_profile`](Self::work_profile)).
    pub fn profile_work(&mut self, on: bool) {
        self.profile.0 = on.then(Vec::new);
    }

    /// Each batch machined since profiling started: its tiles and their times.
    pub fn work_profile(&self) -> &[BatchWork] {
        self.profile.0.as_deref().unwrap_or(&[])
    }

    /// Applies `moves` (in order) to every tile they reach, the tiles on all threads, and
    /// returns what each move did, merged over the tiles in tile order: the same figures
    /// whatever the thread count.
    /// `start_covered`: the first move starts where the last one applied, with this
    /// cutter, ended.
    /// Cells cut deeper than `deep_at` count towards each move's [`TileHit::deep`].
    pub fn machine_batch(
        &mut self,
        cutter: &Cutter,
        moves: &[(Point3, Point3)],
        start_covered: bool,
        deep_at: f64,
    ) -> Vec<TileHit> {
        let profile = cutter.profile();
        let swept: Vec<SweptMove> = moves
            .iter()
            .enumerate()
            .map(|(k, &(a, b))| SweptMove {
                // Every move of a batch but the first starts where the one before ended.
                start_covered: if k == 0 {
                    start_covered
                } else {
                    a == moves[k - 1].1
                },
                deep_at,
                ..with_shape!(&profile, p => SweptMove::new(p, a, b))
            })
            .collect();
        // Which moves reach each tile, in order.
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); self.tiles.len()];
        for (k, mv) in swept.iter().enumerate() {
            if let Some((t0, t1)) = self.tiles_reached(mv) {
                for tj in t0.1..=t1.1 {
                    for ti in t0.0..=t1.0 {
                        lists[tj * self.tx + ti].push(k as u32);
                    }
                }
            }
        }
        let g = self.g;
        // Only the tiles the batch reaches, as one list: a raster batch covers a strip one or
        // two tiles tall, and splitting the whole tile array would hand it all to one thread.
        let active: Vec<(&mut Tile, &Vec<u32>)> = self
            .tiles
            .iter_mut()
            .zip(&lists)
            .filter(|(_, list)| !list.is_empty())
            .collect();
        let timed = self.profile.0.is_some();
        let work: Vec<(Vec<TileHit>, f64)> = active
            .into_par_iter()
            .with_max_len(1)
            .map(|(tile, list)| {
                let t = timed.then(std::time::Instant::now);
                let hits = with_shape!(&profile, shape => apply_list(tile, TileMoves {
                    g: &g,
                    shape,
                    swept: &swept,
                    ids: &Ids::Same,
                    list,
                }));
                (hits, t.map_or(0.0, |t| t.elapsed().as_secs_f64()))
            })
            .collect();
        if let Some(profile) = &mut self.profile.0 {
            profile.push(BatchWork {
                tiles: work.len(),
                total_s: work.iter().map(|w| w.1).sum(),
                largest_s: work.iter().map(|w| w.1).fold(0.0, f64::max),
            });
        }
        let hits: Vec<Vec<TileHit>> = work.into_iter().map(|w| w.0).collect();
        let mut merged: Vec<TileHit> = (0..moves.len() as u32).map(TileHit::empty).collect();
        for tile in &hits {
            for h in tile {
                merged[h.index as usize].merge(h);
            }
        }
        merged
    }
}

/// What one chunk of tiles needs to machine one pass: the moves that reach its tiles,
/// swept once, and each tile's share of them.
pub(crate) struct PartMoves<'a> {
    /// The pass's index of each move in `swept`, ascending.
    pub ids: &'a [u32],
    pub swept: &'a [SweptMove],
    /// For each tile of the part, in order: the places in `swept` of the moves that reach
    /// it, in program order.
    pub lists: &'a [Vec<u32>],
}

impl StockModel {
    /// For each tile (in order), the moves of `toolpath` whose swept box reaches it, in
    /// program order: the same tiles a batch gives each move.
    pub(crate) fn reach(&self, cutter: &Cutter, toolpath: &Toolpath) -> Vec<Vec<u32>> {
        const SPAN: usize = 1 << 14;
        let n = toolpath.moves.len();
        // Each move's tiles on all threads, spans of moves at a time; listed in order.
        type Reached = Option<(Range<usize>, Range<usize>)>;
        let spans: Vec<Vec<Reached>> = (0..n.div_ceil(SPAN))
            .into_par_iter()
            .map(|s| {
                let ids: Vec<u32> = (s * SPAN..((s + 1) * SPAN).min(n))
                    .map(|i| i as u32)
                    .collect();
                swept_moves(cutter, toolpath, &ids)
                    .iter()
                    .map(|mv| self.tiles_of(mv))
                    .collect()
            })
            .collect();
        let mut lists = vec![Vec::new(); self.tiles.len()];
        for (i, reached) in spans.into_iter().flatten().enumerate() {
            let Some((ti, tj)) = reached else { continue };
            for tj in tj {
                for ti in ti.clone() {
                    lists[tj * self.tx + ti].push(i as u32);
                }
            }
        }
        lists
    }

    /// The same stock's tiles `part` alone, uncut, the other tiles without cells (see
    /// [`part`](Self::part)).
    pub(crate) fn part_of(&self, part: Range<usize>) -> StockModel {
        let tiles = self
            .tiles
            .iter()
            .enumerate()
            .map(|(k, t)| Tile {
                i0: t.i0,
                j0: t.j0,
                w: t.w,
                h: t.h,
                heights: vec![0.0; if part.contains(&k) { t.w * t.h } else { 0 }],
            })
            .collect();
        StockModel {
            g: self.g,
            tile: self.tile,
            tx: self.tx,
            tiles,
            profile: WorkProfile::default(),
        }
    }

    /// Tiles in all (along X, then Y).
    pub(crate) fn tile_count(&self) -> usize {
        self.tiles.len()
    }

    /// The tiles of the stock a move reaches, as ranges of tile index along X and Y.
    pub(crate) fn tiles_of(&self, mv: &SweptMove) -> Option<(Range<usize>, Range<usize>)> {
        let ((ti0, tj0), (ti1, tj1)) = self.tiles_reached(mv)?;
        Some((ti0..ti1 + 1, tj0..tj1 + 1))
    }

    /// Cells of tile `t` (its width times its height).
    pub(crate) fn tile_cell_count(&self, t: usize) -> usize {
        self.tiles[t].w * self.tiles[t].h
    }

    /// One tile's heights below the uncut top, row by row.
    pub(crate) fn tile_heights(&self, t: usize) -> &[f32] {
        &self.tiles[t].heights
    }

    /// Sets one tile's heights (as [`tile_heights`](Self::tile_heights) gave them); `false`,
    /// changing nothing, when they are not as many as the tile's cells.
    pub(crate) fn set_tile_heights(&mut self, t: usize, heights: Vec<f32>) -> bool {
        let tile = &mut self.tiles[t];
        if heights.len() != tile.w * tile.h {
            return false;
        }
        tile.heights = heights;
        true
    }

    /// A view of tile `t`'s cells.
    pub(crate) fn tile_cells(&self, t: usize) -> TileCells<'_> {
        TileCells {
            model: self,
            tile: &self.tiles[t],
        }
    }

    /// Applies one pass's moves to the tiles `part` of this stock ([`part`](Self::part)),
    /// one tile after the other on this thread: for each tile, in order, what each move
    /// that met material did there (named by its index in the pass). The moves are taken in
    /// batches of [`BATCH_MOVES`], as [`machine_batch`](Self::machine_batch) takes them, so
    /// that a chain never runs across two batches and each figure is the same bits either
    /// way. Stops between tiles when `stop` says so.
    pub(crate) fn machine_part(
        &mut self,
        cutter: &Cutter,
        part: Range<usize>,
        moves: &PartMoves<'_>,
        stop: &dyn Fn() -> bool,
    ) -> Option<Vec<Vec<TileHit>>> {
        let profile = cutter.profile();
        let g = self.g;
        let ids = Ids::Of(moves.ids);
        let mut out = Vec::with_capacity(part.len());
        for (t, list) in part.zip(moves.lists) {
            if stop() {
                return None;
            }
            let tile = &mut self.tiles[t];
            let mut hits = Vec::new();
            let mut rest = &list[..];
            while let Some(&first) = rest.first() {
                let batch = moves.ids[first as usize] as usize / BATCH_MOVES;
                let end = rest
                    .partition_point(|&k| moves.ids[k as usize] as usize / BATCH_MOVES == batch);
                hits.extend(with_shape!(&profile, shape => apply_list(tile, TileMoves {
                    g: &g,
                    shape,
                    swept: moves.swept,
                    ids: &ids,
                    list: &rest[..end],
                })));
                rest = &rest[end..];
            }
            out.push(hits);
        }
        Some(out)
    }
}

/// The moves `ids` (ascending) of a pass swept as [`StockModel::machine_batch`] sweeps them:
/// each from where the one before ended (the first from the toolpath's start), and every
/// one but the first starting where a move of the same tool was just applied.
pub(crate) fn swept_moves(cutter: &Cutter, toolpath: &Toolpath, ids: &[u32]) -> Vec<SweptMove> {
    let profile = cutter.profile();
    with_shape!(&profile, p => ids
        .iter()
        .map(|&i| {
            let i = i as usize;
            let a = match i {
                0 => toolpath.start,
                i => toolpath.moves[i - 1].to,
            };
            SweptMove {
                start_covered: i > 0,
                ..SweptMove::new(p, a, toolpath.moves[i].to)
            }
        })
        .collect())
}

impl Grid {
    /// Applies a chain of moves along X or Y to `tile` (a raster's moves, nearly all of a
    /// finishing program): consecutive moves of one line, the same direction, each starting
    /// where the one before ended (a single move is a chain of one). `hits` gets what each
    /// did, in the chain's order.
    ///
    /// On each line of cells along the chain the distance across is the same, so the
    /// drop-cutter's edge contact over the tool's whole reach is found once per move and
    /// line; a cell needs the tool at a move's end point (one profile height) only where
    /// the tip's ends clamp the contact — the caps of the swept shape. The same contact as
    /// the general path, since the objective is concave: its maximum on a sub-interval is
    /// its maximum on the whole reach, clamped.
    ///
    /// Within a chain the tool at a point where two moves meet is part of both sweeps, so
    /// each cell of one move's end cap is also reached by the next move, at least as low:
    /// only where both moves' contacts clamp at that point (the sliver of a convex bend)
    /// is the point's tool itself the lowest. So the caps are computed in full only at the
    /// chain's two ends: on a raster, about two cells a move on each line of cells instead
    /// of the front half of the tool's disk (some 1,400 cells for a 3 mm ball on 0.05 mm
    /// cells), with the same lowest tool over every cell. Each cell is then lowered once,
    /// to the lowest tool of the chain over it, and what it lost counts for the move that
    /// went lowest there (the first of equals): a move's depth of cut is the material it
    /// left the cell at, measured from the stock before the chain.
    #[inline(always)]
    fn apply_chain<S: Shape>(
        &self,
        tile: &mut Tile,
        shape: &S,
        chain: &[&SweptMove],
        hits: &mut [TileHit],
        lines: &mut ChainScratch,
    ) {
        let first = chain[0];
        let along_x = first.uy == 0.0;
        let dir = if along_x { first.ux } else { first.uy };
        let a_across = if along_x { first.a.y } else { first.a.x };
        let (o_along, o_across, n_along, n_across) = if along_x {
            (self.x0, self.y0, self.nx, self.ny)
        } else {
            (self.y0, self.x0, self.ny, self.nx)
        };
        let (t_along, len_along, t_across, len_across) = if along_x {
            (tile.i0, tile.w, tile.j0, tile.h)
        } else {
            (tile.j0, tile.h, tile.i0, tile.w)
        };
        let cell = self.cell;
        let inv_cell = 1.0 / cell;
        let Some((q0, q1)) = span(
            a_across - first.r,
            a_across + first.r,
            o_across,
            cell,
            n_across,
        ) else {
            return;
        };
        let (q0, q1) = (q0.max(t_across), q1.min(t_across + len_across - 1));
        let (reference, bottom, area) = (self.reference, self.bottom, cell * cell);
        let last = chain.len() - 1;
        lines.cuts.clear();
        lines.cuts.resize(chain.len(), RowCut::default());
        for q in q0..=q1 {
            let across = o_across + q as f64 * cell - a_across;
            let d2 = across * across;
            if d2 > first.r2 {
                continue;
            }
            let s2 = first.r2 - d2;
            let half = s2.sqrt();
            let line = Line {
                along_x,
                dir,
                o_along,
                n_along,
                t_along,
                len_along,
                cell,
                inv_cell,
                d2,
                s2,
                half,
                bottom,
            };
            let cell_at = |p: usize| {
                if along_x {
                    (q - tile.j0) * tile.w + (p - tile.i0)
                } else {
                    (p - tile.j0) * tile.w + (q - tile.i0)
                }
            };
            let width_across = if along_x { -across * dir } else { across * dir };
            if let [mv] = chain {
                // A move alone: each cell it reaches is in one of its runs only, and is
                // lowered at once (a short move does not pay for the whole line).
                let now = line.runs(shape, mv);
                let Some([start, ..]) = &now.runs else {
                    continue;
                };
                let mut cut = RowCut::default();
                let mut lower = |p: usize, z: f64| {
                    let at = cell_at(p);
                    tile.heights[at] = cut.lower(tile.heights[at], z, reference);
                };
                if !mv.start_covered {
                    for p in start.clone() {
                        lower(p, line.tool_over(shape, mv, as_f64(p), false));
                    }
                }
                line.offer(shape, mv, &now, None, &mut lower);
                if cut.depth > 0.0 {
                    cut.add_to(&mut hits[0], area, width_across, mv.deep_at);
                }
                continue;
            }
            // The lowest tool of the chain over each cell of the line, and whose it is. Each
            // move's candidates are offered once the next move's runs are known.
            let best = &mut lines.best[..len_along];
            best.fill(f64::INFINITY);
            let who = &mut lines.who[..len_along];
            let mut offer = |j: usize, p: usize, z: f64| {
                let k = p - t_along;
                if z < best[k] {
                    best[k] = z;
                    who[k] = j as u32;
                }
            };
            let mut before: Option<MoveRuns> = None;
            for (j, mv) in chain.iter().enumerate() {
                let now = line.runs(shape, mv);
                if j == 0 && !mv.start_covered {
                    // The chain's first start cap, where the move before did not apply it.
                    if let Some([start, ..]) = &now.runs {
                        for p in start.clone() {
                            offer(j, p, line.tool_over(shape, mv, as_f64(p), false));
                        }
                    }
                }
                if let Some(b) = before {
                    line.offer(shape, chain[j - 1], &b, now.runs.as_ref(), |p, z| {
                        offer(j - 1, p, z)
                    });
                }
                before = Some(now);
            }
            if let Some(b) = before {
                line.offer(shape, chain[last], &b, None, |p, z| offer(last, p, z));
            }
            // Each cell lowered once, what it lost counted for the move that went lowest.
            for c in lines.cuts.iter_mut() {
                *c = RowCut::default();
            }
            for (k, (&z, &j)) in lines.best[..len_along].iter().zip(&lines.who).enumerate() {
                if z == f64::INFINITY {
                    continue;
                }
                let at = cell_at(k + t_along);
                let cut = &mut lines.cuts[j as usize];
                tile.heights[at] = cut.lower(tile.heights[at], z, reference);
            }
            for ((cut, hit), mv) in lines.cuts.iter().zip(hits.iter_mut()).zip(chain) {
                if cut.depth > 0.0 {
                    cut.add_to(hit, area, width_across, mv.deep_at);
                }
            }
        }
    }
}

/// Room for one chain's lines of cells ([`Grid::apply_chain`]), made once per tile and
/// batch.
struct ChainScratch {
    /// What each move cut on the current line.
    cuts: Vec<RowCut>,
    /// The lowest tool over each cell of the line, and the move it belongs to.
    best: [f64; TILE],
    who: [u32; TILE],
}

impl ChainScratch {
    fn new() -> Self {
        Self {
            cuts: Vec::new(),
            best: [f64::INFINITY; TILE],
            who: [0; TILE],
        }
    }
}

/// One line of cells along a chain, at a fixed distance across it, within one tile.
struct Line {
    along_x: bool,
    /// +1 or -1: the chain's direction along the axis.
    dir: f64,
    /// Where the grid's first cell centre is along the axis, and its cells along it.
    o_along: f64,
    n_along: usize,
    /// The tile's first cell along the axis, and its cells along it.
    t_along: usize,
    len_along: usize,
    cell: f64,
    inv_cell: f64,
    /// Distance across, squared; the tool's radius squared less it; half the tool's reach
    /// along the line.
    d2: f64,
    s2: f64,
    half: f64,
    bottom: f64,
}

/// One move on one line of cells: its contact where the move's ends do not clamp it, the
/// profile height there, and its runs.
struct MoveRuns {
    w_free: f64,
    h_free: f64,
    /// The cells of the start cap, the middle and the end cap, within the tile; `None`
    /// where the move does not reach the line within it.
    runs: Option<[std::ops::Range<usize>; 3]>,
}

impl Line {
    /// Where the move is along the line.
    #[inline(always)]
    fn a_along(&self, mv: &SweptMove) -> f64 {
        if self.along_x { mv.a.x } else { mv.a.y }
    }

    /// The tool at `mv`'s end (`at_end`) or start over cell `p` of the line, or infinity
    /// where the cell is out of its reach.
    #[inline(always)]
    fn tool_over<S: Shape>(&self, shape: &S, mv: &SweptMove, p: f64, at_end: bool) -> f64 {
        let t = (self.o_along + p * self.cell - self.a_along(mv)) * self.dir;
        // The tip at the move's end or start, `w` along from the cell's foot.
        let w = if at_end { mv.len - t } else { -t };
        let rho2 = self.d2 + w * w;
        let h = (mv.a.z + mv.slope * (t + w) + shape.height_sq(rho2)).max(self.bottom);
        let reached = if at_end {
            w >= -self.half
        } else {
            w <= self.half
        };
        if reached { h } else { f64::INFINITY }
    }

    /// The move's contact and its three runs on this line.
    #[inline(always)]
    fn runs<S: Shape>(&self, shape: &S, mv: &SweptMove) -> MoveRuns {
        let (dir, half, cell, inv_cell, o_along) =
            (self.dir, self.half, self.cell, self.inv_cell, self.o_along);
        let a_along = self.a_along(mv);
        // The contact over the whole reach, before the move's ends clamp it.
        let (w_free, h_free) = shape.edge_contact(-mv.slope, mv.c, self.d2, self.s2, -half, half);
        let len = mv.len;
        let (lo, hi) = if dir > 0.0 {
            (a_along - half, a_along + len + half)
        } else {
            (a_along - len - half, a_along + half)
        };
        let slack = 1e-9 * (1.0 + half + lo.abs().max(hi.abs()));
        let runs = match span_by(lo - slack, hi + slack, o_along, inv_cell, self.n_along) {
            Some((p0, p1)) if p0.max(self.t_along) <= p1.min(self.t_along + self.len_along - 1) => {
                let (p0, p1) = (
                    p0.max(self.t_along),
                    p1.min(self.t_along + self.len_along - 1),
                );
                let t_at = |p: usize| (o_along + as_f64(p) * cell - a_along) * dir;
                // `t` is monotonic in `p`: the start cap, where the lowest tool over a cell
                // is the one at the move's start (`w_free < -t`), the end cap
                // (`w_free > len - t`) at the other end, and between them the cells whose
                // contact is `w_free` itself. Found by `boundary`, not cell by cell; its
                // guesses are where each boundary lies, in cells from the first centre,
                // checked against the predicates themselves.
                let in_start = |p: usize| w_free < -t_at(p);
                let in_end = |p: usize| w_free > len - t_at(p);
                let start_at = (a_along - dir * w_free - o_along) * inv_cell;
                let end_at = (a_along + dir * (len - w_free) - o_along) * inv_cell;
                // The two boundaries are found independently (side by side in the
                // processor): a cell of the start cap is never in the end cap, so the end
                // cap's boundary over the whole reach is already on the right side of the
                // start cap's.
                Some(if dir > 0.0 {
                    let s = boundary(p0, p1, start_at, in_start);
                    let e = boundary(p0, p1, end_at, |p| !in_end(p));
                    [p0..s, s..e, e..p1 + 1]
                } else {
                    let s = boundary(p0, p1, start_at, |p| !in_start(p));
                    let e = boundary(p0, p1, end_at, in_end);
                    [s..p1 + 1, e..s, p0..e]
                })
            }
            _ => None,
        };
        MoveRuns {
            w_free,
            h_free,
            runs,
        }
    }

    /// Offers the lowest tool of `mv` over the cells of its middle and end cap: the whole
    /// end cap at a chain's end (`next_runs` `None`), else only where the next move's
    /// contact clamps at this point too (its start cap).
    #[inline(always)]
    fn offer<S: Shape>(
        &self,
        shape: &S,
        mv: &SweptMove,
        runs: &MoveRuns,
        next_runs: Option<&[std::ops::Range<usize>; 3]>,
        mut offer: impl FnMut(usize, f64),
    ) {
        let Some([_, middle, end]) = &runs.runs else {
            return;
        };
        let (dir, cell, o_along, a_along) = (self.dir, self.cell, self.o_along, self.a_along(mv));
        let (az, m, w_free, h_free) = (mv.a.z, mv.slope, runs.w_free, runs.h_free);
        for p in middle.clone() {
            let t = (o_along + as_f64(p) * cell - a_along) * dir;
            offer(p, (az + m * (t + w_free) + h_free).max(self.bottom));
        }
        let end = match next_runs {
            None => end.clone(),
            Some([next_start, ..]) if dir > 0.0 => end.start..end.end.min(next_start.end),
            Some([next_start, ..]) => end.start.max(next_start.start)..end.end,
        };
        for p in end {
            offer(p, self.tool_over(shape, mv, as_f64(p), true));
        }
    }
}

/// What a move did to one line of cells: its deepest cut and the sum of the depths.
#[derive(Clone, Copy, Default)]
struct RowCut {
    depth: f64,
    sum: f64,
}

impl RowCut {
    /// The cell `stored` lowered to `z` where that is below it; what it becomes.
    #[inline]
    fn lower(&mut self, stored: f32, z: f64, reference: f64) -> f32 {
        let top = reference + stored as f64;
        if z < top {
            self.depth = self.depth.max(top - z);
            self.sum += top - z;
            (z - reference) as f32
        } else {
            stored
        }
    }

    /// Adds the line's figures to the move's: all its cells lie `across` from the move.
    /// Selects, not jumps: whether a cell is cut is as good as random to the branch
    /// predictor where a line is a single cell (the general sweep's).
    #[inline]
    fn add_to(&self, hit: &mut TileHit, area: f64, across: f64, deep_at: f64) {
        hit.depth = hit.depth.max(self.depth);
        hit.removed += self.sum * area;
        let widen = |(lo, hi): (f64, f64), yes: bool| {
            if yes {
                (lo.min(across), hi.max(across))
            } else {
                (lo, hi)
            }
        };
        hit.across = widen(hit.across, self.depth > MATERIAL_TOLERANCE);
        hit.deep = widen(hit.deep, self.depth > deep_at);
    }
}

/// A view of one tile's cells for [`StockModel::fold_tiles`].
#[derive(Clone, Copy, Debug)]
pub struct TileCells<'a> {
    model: &'a StockModel,
    tile: &'a Tile,
}

impl TileCells<'_> {
    /// The first cell `(i, j)` and the number of cells along X and Y.
    pub fn extent(&self) -> ((usize, usize), (usize, usize)) {
        ((self.tile.i0, self.tile.j0), (self.tile.w, self.tile.h))
    }

    /// The centre of the tile's first cell.
    pub fn origin(&self) -> (f64, f64) {
        self.model.centre(self.tile.i0, self.tile.j0)
    }

    /// Calls `f(i, j, x, y, height)` for each cell, row by row.
    pub fn for_each(&self, mut f: impl FnMut(usize, usize, f64, f64, f64)) {
        let (m, t) = (self.model, self.tile);
        for r in 0..t.h {
            let j = t.j0 + r;
            let y = m.g.y0 + j as f64 * m.g.cell;
            for c in 0..t.w {
                let i = t.i0 + c;
                let x = m.g.x0 + i as f64 * m.g.cell;
                f(i, j, x, y, m.g.reference + t.heights[r * t.w + c] as f64);
            }
        }
    }
}

impl Grid {
    /// Lowers the cells of `tile` under one move.
    #[inline(always)]
    fn apply<S: Shape>(&self, tile: &mut Tile, shape: &S, mv: &SweptMove, index: u32) -> TileHit {
        if mv.is_along_axis() {
            let mut hit = [TileHit::empty(index)];
            self.apply_chain(tile, shape, &[mv], &mut hit, &mut ChainScratch::new());
            return hit[0];
        }
        let mut hit = TileHit::empty(index);
        let (x0, y0, cell) = (self.x0, self.y0, self.cell);
        let Some((j0, j1)) = span(mv.lo.1, mv.hi.1, y0, cell, self.ny) else {
            return hit;
        };
        let (j0, j1) = (j0.max(tile.j0), j1.min(tile.j0 + tile.h - 1));
        let reference = self.reference;
        let bottom = self.bottom;
        let area = cell * cell;
        for j in j0..=j1 {
            let cy = y0 + j as f64 * cell;
            let Some((xl, xr)) = mv.row_reach(cy) else {
                continue;
            };
            let Some((i0, i1)) = span(xl, xr, x0, cell, self.nx) else {
                continue;
            };
            let (i0, i1) = (i0.max(tile.i0), i1.min(tile.i0 + tile.w - 1));
            if i0 > i1 {
                continue;
            }
            let row = (j - tile.j0) * tile.w;
            for i in i0..=i1 {
                let k = row + i - tile.i0;
                let top = reference + tile.heights[k] as f64;
                let cx = x0 + i as f64 * cell;
                if let Some(z) = mv.lowest_below(shape, cx, cy, top) {
                    let z = z.max(bottom);
                    if z >= top {
                        continue;
                    }
                    tile.heights[k] = (z - reference) as f32;
                    let across = if mv.len > 0.0 {
                        (cx - mv.a.x) * mv.uy - (cy - mv.a.y) * mv.ux
                    } else {
                        cx - mv.a.x
                    };
                    hit.add_cut(top - z, area, across, mv.deep_at);
                }
            }
        }
        hit
    }
}

/// How [`apply_list`] names the moves of `swept` in what it reports.
enum Ids<'a> {
    /// By their place in `swept` (a whole batch).
    Same,
    /// `swept[k]` is move `ids[k]` (a chunk's share of a pass: only the moves that reach
    /// its tiles were swept).
    Of(&'a [u32]),
}

impl Ids<'_> {
    #[inline(always)]
    fn id(&self, k: u32) -> u32 {
        match self {
            Ids::Same => k,
            Ids::Of(ids) => ids[k as usize],
        }
    }
}

/// What [`apply_list`] applies to one tile: the moves `list` (indices into `swept`, in
/// order) of the tool `shape` over the grid `g`, each named in what it reports by `ids[k]`
/// for `swept[k]` (its index in the pass or batch; consecutive ids are consecutive moves,
/// which is what lets them form a chain).
struct TileMoves<'a, S> {
    g: &'a Grid,
    shape: &'a S,
    swept: &'a [SweptMove],
    ids: &'a Ids<'a>,
    list: &'a [u32],
}

/// Applies `moves` to one tile: what each that met material did. The cells of a move's row
/// caps are the simulator's inner loop, square roots of independent cells: on a processor
/// with AVX2 the same code is compiled four doubles wide instead of baseline x86-64's two.
/// The same operations in the same order either way (no fused multiply-add, no
/// reassociation), so the stock is bit for bit the same on every machine.
fn apply_list<S: Shape>(tile: &mut Tile, moves: TileMoves<'_, S>) -> Vec<TileHit> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `apply_list_avx2` only needs AVX2, which this processor was just found to
        // have.
        #[allow(unsafe_code)]
        return unsafe { apply_list_avx2(tile, moves) };
    }
    apply_list_any(tile, moves)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn apply_list_avx2<S: Shape>(tile: &mut Tile, moves: TileMoves<'_, S>) -> Vec<TileHit> {
    apply_list_any(tile, moves)
}

#[inline(always)]
fn apply_list_any<S: Shape>(tile: &mut Tile, moves: TileMoves<'_, S>) -> Vec<TileHit> {
    let TileMoves {
        g,
        shape,
        swept,
        ids,
        list,
    } = moves;
    let mut out = Vec::new();
    let mut scratch = ChainScratch::new();
    let mut chain: Vec<&SweptMove> = Vec::new();
    let mut hits: Vec<TileHit> = Vec::new();
    let mut at = 0;
    while at < list.len() {
        let k = list[at];
        let mv = &swept[k as usize];
        if !mv.is_along_axis() {
            let hit = g.apply(tile, shape, mv, ids.id(k));
            if hit.depth > 0.0 {
                out.push(hit);
            }
            at += 1;
            continue;
        }
        // The longest chain from here: the moves that follow on in the batch, along the
        // same line in the same direction.
        let mut end = at + 1;
        while end < list.len()
            && ids.id(list[end]) == ids.id(list[end - 1]) + 1
            && swept[list[end] as usize].continues(&swept[list[end - 1] as usize])
        {
            end += 1;
        }
        chain.clear();
        chain.extend(list[at..end].iter().map(|&k| &swept[k as usize]));
        hits.clear();
        hits.extend(list[at..end].iter().map(|&k| TileHit::empty(ids.id(k))));
        g.apply_chain(tile, shape, &chain, &mut hits, &mut scratch);
        out.extend(hits.iter().filter(|h| h.depth > 0.0));
        at = end;
    }
    out
}

/// The first `p` in `lo..=hi` where `pred` fails (`hi + 1` if none), for a `pred` that holds
/// on a prefix of the range: guessed by bisection, so whole runs are skipped in `log` steps.
fn first_not(lo: usize, hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut b) = (lo, hi + 1);
    while a < b {
        let mid = a + (b - a) / 2;
        if pred(mid) {
            a = mid + 1;
        } else {
            b = mid;
        }
    }
    a
}

/// As [`first_not`], starting from `guess`, where the boundary should be (in cells): the
/// answer is checked against `pred` itself and walked a few cells to it, so rounding in the
/// guess cannot move a run's end; bisection only where the guess is far off. A move's row
/// has three runs to find, and it is visited once per move: bisection's dozen predicate
/// calls were a third of the simulator's time on a raster.
#[inline(always)]
fn boundary(lo: usize, hi: usize, guess: f64, pred: impl Fn(usize) -> bool) -> usize {
    if hi < lo {
        return lo;
    }
    let mut p = fast_ceil(guess).clamp(as_f64(lo), as_f64(hi) + 1.0) as i64 as usize;
    for _ in 0..4 {
        if p > lo && !pred(p - 1) {
            p -= 1;
        } else if p <= hi && pred(p) {
            p += 1;
        } else {
            // `pred` holds before `p` and fails at it: the one boundary of a prefix.
            return p;
        }
    }
    first_not(lo, hi, pred)
}

/// A cell number as a float: through `i64`, one instruction, where `usize` needs several on
/// x86-64 (exact: cell numbers are far below 2⁵³).
#[inline(always)]
fn as_f64(p: usize) -> f64 {
    p as i64 as f64
}

/// `x.floor()` without a call into the C library, which is what `floor` compiles to for
/// x86-64's baseline (no SSE4.1 rounding instruction): the simulator rounds twice per row of
/// cells per move. Exact: a float of magnitude 2⁵² or more is an integer already.
#[inline]
fn fast_floor(x: f64) -> f64 {
    if x.abs() < 4_503_599_627_370_496.0 {
        let t = x as i64 as f64;
        if t > x { t - 1.0 } else { t }
    } else {
        x.floor()
    }
}

/// `x.ceil()`, as [`fast_floor`].
#[inline]
fn fast_ceil(x: f64) -> f64 {
    -fast_floor(-x)
}

/// As [`span`], multiplying by `1 / cell` instead of dividing by it: for a range already
/// widened by a slack far above a rounding, where the cells' own tests decide at the ends.
/// A division is the slowest step of a move's line of cells, and there is one per line.
#[inline(always)]
fn span_by(lo: f64, hi: f64, origin: f64, inv_cell: f64, n: usize) -> Option<(usize, usize)> {
    let first = fast_ceil((lo - origin) * inv_cell).max(0.0);
    let last = fast_floor((hi - origin) * inv_cell).min(as_f64(n) - 1.0);
    (first <= last).then_some((first as i64 as usize, last as i64 as usize))
}

/// Cell indices whose centres lie in `[lo, hi]` along one axis.
fn span(lo: f64, hi: f64, origin: f64, cell: f64, n: usize) -> Option<(usize, usize)> {
    let first = fast_ceil((lo - origin) / cell).max(0.0);
    let last = fast_floor((hi - origin) / cell).min(n as f64 - 1.0);
    (first <= last).then_some((first as usize, last as usize))
}

/// A cut deeper than the tool's maximum depth of cut buries it only where the part that
/// deep is at least this share of its diameter wide. A finishing pass taking the roughing
/// allowance off a part's side cuts it the full height of the side but a few tenths wide:
/// cells fine enough to see that skin would otherwise call it a buried tool.
pub const BURIED_SHARE: f64 = 0.25;

/// What counts as burying the tool.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_depth_of_cut: f64,
    /// [`BURIED_SHARE`] of the tool's diameter, mm.
    buried_width: f64,
}

impl Limits {
    fn new(cutter: &Cutter, max_depth_of_cut: f64) -> Self {
        Self {
            max_depth_of_cut,
            buried_width: BURIED_SHARE * cutter.diameter(),
        }
    }

    /// Cells cut deeper than this count towards the width of a buried cut.
    fn deep_at(self) -> f64 {
        self.max_depth_of_cut + MATERIAL_TOLERANCE
    }
}

/// Moves of [`StockModel::run`] waiting to be machined together.
struct Batch<'a> {
    cutter: &'a Cutter,
    limits: Limits,
    segments: Vec<(Point3, Point3)>,
    /// Each move's index in the posted toolpath, kind and end.
    moves: Vec<(usize, MoveKind, Point3)>,
    /// The first move starts where a move already applied ended.
    start_covered: bool,
}

impl Batch<'_> {
    /// Machines the waiting moves and records what each met.
    fn flush(&mut self, stock: &mut StockModel, report: &mut EngagementReport) {
        if self.segments.is_empty() {
            return;
        }
        let hits = stock.machine_batch(
            self.cutter,
            &self.segments,
            self.start_covered,
            self.limits.deep_at(),
        );
        for (hit, &(index, kind, to)) in hits.iter().zip(&self.moves) {
            record(report, index, kind, to, hit, self.limits);
        }
        self.segments.clear();
        self.moves.clear();
        self.start_covered = true;
    }
}

/// Hands the moves pushed since the last call (`moves[*handed..]`, final once pushed) to
/// `posted`, before the batch they end is machined.
fn hand_on(moves: &[Move], handed: &mut usize, posted: &mut dyn FnMut(&[Move])) {
    posted(&moves[*handed..]);
    *handed = moves.len();
}

/// Adds one move's meeting with material to `report`.
fn record(
    report: &mut EngagementReport,
    index: usize,
    kind: MoveKind,
    to: Point3,
    hit: &TileHit,
    limits: Limits,
) {
    let depth = hit.depth;
    if depth <= MATERIAL_TOLERANCE {
        return;
    }
    let finding = MoveFinding {
        index,
        kind,
        to,
        depth,
    };
    match kind {
        MoveKind::Rapid => {
            report.rapids_in_material += 1;
            report.first_rapid_in_material.get_or_insert(finding);
        }
        MoveKind::Cut | MoveKind::Plunge => {
            report.deepest_cut = report.deepest_cut.max(depth);
            if depth > limits.deep_at() && hit.deep_width() >= limits.buried_width {
                report.too_deep_moves += 1;
                report.first_too_deep.get_or_insert(finding);
            }
        }
    }
}
/// One operation of a program, as the stock sees it.
#[derive(Clone, Copy, Debug)]
pub struct ProgramStep<'a> {
    pub cutter: Cutter,
    /// The deepest the tool may cut into material in one move, mm.
    pub max_depth_of_cut: f64,
    pub toolpath: &'a Toolpath,
}

/// Machines a whole program's operations in order from the uncut `stock` block, each from
/// what the ones before left: every straight-down rapid is made to stop above the material
/// as it stands and feed the rest of the way
/// ([`machine_with_safe_descents`](StockModel::machine_with_safe_descents)), and each
/// operation's engagement is reported. Returns the toolpaths to post, with their reports.
/// The cells are sized for the smallest tool ([`StockModel::default_cell`]).
pub fn check_program(
    stock: Aabb,
    steps: &[ProgramStep<'_>],
) -> Result<Vec<(Toolpath, EngagementReport)>, StockModelError> {
    check_program_posting(stock, steps, &mut |_, _| {})
}

/// [`check_program`], handing each piece of each operation's posted toolpath to `posted`
/// (the operation's index, then the moves), in order, as soon as it is final; every
/// operation is announced with an empty piece before its moves.
pub fn check_program_posting(
    stock: Aabb,
    steps: &[ProgramStep<'_>],
    posted: &mut dyn FnMut(usize, &[Move]),
) -> Result<Vec<(Toolpath, EngagementReport)>, StockModelError> {
    let smallest = steps
        .iter()
        .map(|s| s.cutter.radius())
        .fold(f64::INFINITY, f64::min);
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    let mut model = StockModel::new(stock, StockModel::default_cell(stock, smallest))?;
    Ok(steps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            posted(k, &[]);
            model.machine_posting(&s.cutter, s.toolpath, s.max_depth_of_cut, &mut |m| {
                posted(k, m)
            })
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn block() -> Aabb {
        Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(40.0, 20.0, 10.0),
        }
    }

    /// A toolpath from `start` through `moves` (kind and X, Y, Z).
    pub(crate) fn path(start: Point3, moves: &[(MoveKind, [f64; 3])]) -> Toolpath {
        let mut tp = Toolpath::new(start);
        for &(k, [x, y, z]) in moves {
            tp.push(k, Point3::new(x, y, z));
        }
        tp
    }

    /// A toolpath that cuts from the first of `points` through each of the others in turn.
    pub(crate) fn cuts(points: &[[f64; 3]]) -> Toolpath {
        let [x, y, z] = points[0];
        let mut tp = Toolpath::new(Point3::new(x, y, z));
        for &[x, y, z] in &points[1..] {
            tp.push(MoveKind::Cut, Point3::new(x, y, z));
        }
        tp
    }

    #[test]
    fn a_slot_lowers_exactly_the_cells_under_the_tool() {
        let mut s = StockModel::new(block(), 0.25).unwrap();
        let flat = Cutter::Flat { diameter: 6.0 };
        let tp = path(
            Point3::new(5.0, 10.0, 20.0),
            &[
                (MoveKind::Rapid, [5.0, 10.0, 11.0]),
                (MoveKind::Plunge, [5.0, 10.0, 8.0]),
                (MoveKind::Cut, [35.0, 10.0, 8.0]),
                (MoveKind::Rapid, [35.0, 10.0, 20.0]),
            ],
        );
        let r = s.machine(&flat, &tp, 6.0);
        assert!(r.is_clean(), "{r:?}");
        assert!((r.deepest_cut - 2.0).abs() < 1e-9, "{r:?}");
        let (nx, ny) = s.size();
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = s.centre(i, j);
                let d = if x < 5.0 {
                    ((x - 5.0).powi(2) + (y - 10.0).powi(2)).sqrt()
                } else if x > 35.0 {
                    ((x - 35.0).powi(2) + (y - 10.0).powi(2)).sqrt()
                } else {
                    (y - 10.0).abs()
                };
                // The tool is a closed solid: a cell at exactly its radius is cut.
                let want = if d <= 3.0 { 8.0 } else { 10.0 };
                assert_eq!(s.height(i, j), want, "cell at {x} {y}");
            }
        }
    }

    #[test]
    fn a_ball_on_a_slope_leaves_its_swept_surface() {
        let mut s = StockModel::new(block(), 0.2).unwrap();
        let ball = Cutter::Ball { diameter: 4.0 };
        // A ramp from (5, 10, 9) to (35, 10, 6).
        let tp = cuts(&[[5.0, 10.0, 9.0], [35.0, 10.0, 6.0]]);
        s.machine(&ball, &tp, 10.0);
        let (nx, ny) = s.size();
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = s.centre(i, j);
                // Brute force: the lowest surface point over the cell, sampled finely.
                let mut want = 10.0f64;
                for k in 0..=20_000 {
                    let t = k as f64 / 20_000.0;
                    let (px, pz) = (5.0 + 30.0 * t, 9.0 - 3.0 * t);
                    let rho = ((px - x).powi(2) + (y - 10.0).powi(2)).sqrt();
                    if rho <= 2.0 {
                        want = want.min(pz + ball.height_at(rho));
                    }
                }
                let got = s.height(i, j);
                assert!(
                    (got - want).abs() < 2e-4,
                    "cell at {x} {y}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn full_depth_cuts_and_rapids_into_material_are_found() {
        let mut s = StockModel::new(block(), 0.5).unwrap();
        let ball = Cutter::Ball { diameter: 3.0 };
        // On cell centres, so that the deepest cell is right under the tip.
        let tp = path(
            Point3::new(2.25, 2.25, 15.0),
            &[
                // Rapid down to 1 mm above the floor: straight through 9 mm of stock.
                (MoveKind::Rapid, [2.25, 2.25, 1.0]),
                (MoveKind::Plunge, [2.25, 2.25, 0.0]),
                (MoveKind::Cut, [37.75, 2.25, 0.0]),
                (MoveKind::Cut, [37.75, 2.75, 0.0]),
                (MoveKind::Rapid, [37.75, 2.75, 15.0]),
            ],
        );
        let r = s.machine(&ball, &tp, default_max_depth_of_cut(&ball));
        let rapid = r.first_rapid_in_material.unwrap();
        assert_eq!((rapid.index, rapid.kind), (0, MoveKind::Rapid));
        assert!((rapid.depth - 9.0).abs() < 1e-9, "{rapid:?}");
        // The plunge finishes what the rapid left: 1 mm. The long cut is buried 10 mm.
        let deep = r.first_too_deep.unwrap();
        assert_eq!(deep.index, 2, "{r:?}");
        assert!((deep.depth - 10.0).abs() < 1e-9, "{deep:?}");
        // The step over still meets the uncut wall beside the slot.
        assert_eq!(r.too_deep_moves, 2, "{r:?}");
        let w = r.warnings("Raster finishing 1", 3.0);
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("move 3") && w[0].contains("10.00 mm deep"),
            "{w:?}"
        );
        assert!(w[1].contains("rapid move 1"), "{w:?}");
        // Once machined, the same path meets nothing.
        let again = s.machine(&ball, &tp, 3.0);
        assert!(again.is_clean() && again.deepest_cut == 0.0, "{again:?}");
    }

    #[test]
    fn straight_down_rapids_stop_above_the_material_and_feed_the_rest() {
        let mut s = StockModel::new(block(), 0.5).unwrap();
        let flat = Cutter::Flat { diameter: 4.0 };
        // A pocket 4 mm deep around (10.25, 10.25); then an approach into it and one beside
        // it onto the uncut top, both rapiding straight down to 1 mm above their targets.
        let first = path(
            Point3::new(10.25, 10.25, 20.0),
            &[
                (MoveKind::Rapid, [10.25, 10.25, 11.0]),
                (MoveKind::Plunge, [10.25, 10.25, 6.0]),
                (MoveKind::Rapid, [10.25, 10.25, 20.0]),
            ],
        );
        s.machine(&flat, &first, 12.0);
        let second = path(
            Point3::new(10.25, 10.25, 20.0),
            &[
                (MoveKind::Rapid, [10.25, 10.25, 6.5]),
                (MoveKind::Plunge, [10.25, 10.25, 5.5]),
                (MoveKind::Rapid, [10.25, 10.25, 20.0]),
                (MoveKind::Rapid, [30.25, 10.25, 20.0]),
                (MoveKind::Rapid, [30.25, 10.25, 6.5]),
                (MoveKind::Plunge, [30.25, 10.25, 5.5]),
                (MoveKind::Rapid, [30.25, 10.25, 20.0]),
            ],
        );
        let (posted, report) = s.machine_with_safe_descents(&flat, &second, 12.0);
        assert!(report.first_rapid_in_material.is_none(), "{report:?}");
        let kinds: Vec<(MoveKind, f64)> = posted.moves.iter().map(|m| (m.kind, m.to.z)).collect();
        assert_eq!(
            kinds,
            [
                // Into the pocket: its floor is at 6, so the rapid stops at 7 and feeds on.
                (MoveKind::Rapid, 7.0),
                (MoveKind::Plunge, 6.5),
                (MoveKind::Plunge, 5.5),
                (MoveKind::Rapid, 20.0),
                (MoveKind::Rapid, 20.0),
                // Onto the uncut top at 10: rapid to 11, feed down to 6.5, then on.
                (MoveKind::Rapid, 11.0),
                (MoveKind::Plunge, 6.5),
                (MoveKind::Plunge, 5.5),
                (MoveKind::Rapid, 20.0),
            ]
        );
        // The deepest feed is the one down from 11 through the uncut top at 10 to 6.5.
        assert!((report.deepest_cut - 3.5).abs() < 1e-9, "{report:?}");
        assert!(s.machine(&flat, &second, 12.0).rapids_in_material == 0);
    }

    #[test]
    fn a_thin_skin_cut_full_height_does_not_bury_the_tool_but_a_plunge_into_stock_does() {
        // Two flat passes 7 mm deep leave a skin 0.3 mm wide between them (the cells from
        // x = 20.025 to 20.275), as a roughing allowance stands on a part's side.
        let mut s = StockModel::new(block(), 0.05).unwrap();
        let flat = Cutter::Flat { diameter: 4.0 };
        let passes = path(
            Point3::new(18.0, 2.0, 3.0),
            &[
                (MoveKind::Cut, [18.0, 16.0, 3.0]),
                (MoveKind::Rapid, [18.0, 16.0, 15.0]),
                (MoveKind::Rapid, [22.3, 2.0, 15.0]),
                (MoveKind::Plunge, [22.3, 2.0, 3.0]),
                (MoveKind::Cut, [22.3, 16.0, 3.0]),
            ],
        );
        s.machine(&flat, &passes, 100.0);
        assert_eq!(s.height(403, 180), 10.0, "the skin stands");
        assert_eq!(s.height(399, 180), 3.0);
        assert_eq!(s.height(407, 180), 3.0);
        let ball = Cutter::Ball { diameter: 3.0 };
        let max = default_max_depth_of_cut(&ball);
        // A plunge through the skin: 7 mm deep, 0.25 mm wide (between cell centres).
        let skin = path(
            Point3::new(20.15, 9.0, 15.0),
            &[(MoveKind::Plunge, [20.15, 9.0, 3.0])],
        );
        let r = s.machine(&ball, &skin, max);
        assert!(r.deepest_cut > 6.9, "{r:?}");
        assert!(
            r.first_too_deep.is_none(),
            "a skin is no buried tool: {r:?}"
        );
        // A plunge into the uncut stock beyond the passes: buried across its whole width.
        let buried = path(
            Point3::new(20.15, 19.0, 15.0),
            &[(MoveKind::Plunge, [20.15, 19.0, 2.0])],
        );
        let r = s.machine(&ball, &buried, max);
        assert_eq!(r.too_deep_moves, 1, "{r:?}");
    }

    #[test]
    fn large_stocks_get_coarser_cells_and_bad_ones_are_refused() {
        let big = Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(3000.0, 2000.0, 100.0),
        };
        let cell = StockModel::default_cell(big, 0.5);
        let s = StockModel::new(big, cell).unwrap();
        assert!(s.size().0 * s.size().1 <= MAX_CELLS);
        assert!((StockModel::default_cell(block(), 1.5) - 0.15).abs() < 1e-12);
        assert!(StockModel::new(big, 0.01).is_err());
        assert!(StockModel::new(block(), 0.0).is_err());
        assert!(StockModel::new(block(), f64::NAN).is_err());
        let empty = Aabb {
            min: Point3::new(1.0, 0.0, 0.0),
            max: Point3::new(0.0, 1.0, 1.0),
        };
        assert_eq!(
            StockModel::new(empty, 1.0),
            Err(StockModelError::EmptyStock)
        );
        assert_eq!(
            default_max_depth_of_cut(&Cutter::Flat { diameter: 6.0 }),
            12.0
        );
        let v = Cutter::VBit {
            diameter: 6.0,
            included_angle: 90.0,
        };
        assert!((default_max_depth_of_cut(&v) - 3.0).abs() < 1e-12);
    }
}
