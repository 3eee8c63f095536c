//! Stock simulation and verification: what a program leaves of the stock, and how that
//! compares with the model (ARCHITECTURE.md §2.2).
//!
//! A program's passes (one per operation, or per tool of a G-code file) are machined in
//! order into a [`StockModel`], each from what the ones before left. Moves are applied in
//! batches: within a batch every tile of the stock applies, in program order, the moves that
//! reach it, the tiles on all threads; what each move did (how deep and how wide it cut into
//! the stock as it stood, what it removed) is merged over the tiles in tile order. A cell's
//! height is the minimum over the moves, and every figure is combined in a fixed order, so
//! the result is bit-identical whatever the thread count.
//!
//! [`verify`] then compares every cell with the model's top surface over its centre
//! (computed exactly from the triangles' planes, a tile at a time so that it takes no memory
//! per cell): gouges below the model, material left above it.

use crate::cancel::CancelToken;
use crate::cutter::Cutter;
use crate::geom::{Point3, Rect, Triangle};
use crate::stock_model::{MATERIAL_TOLERANCE, StockModel, TileCells, TileHit};
use crate::toolpath::{Feeds, MoveKind, Toolpath};
use crate::{Mesh, TriangleIndex};

pub use crate::stock_model::BATCH_MOVES;

/// Default depth below the model counted as a gouge, mm: the toolpaths' own tolerance
/// ([`crate::raster::DEFAULT_MERGE_TOLERANCE`]) and the resolution a millimetre program is
/// written at; the stock's `f32` heights are exact to a few nanometres, so a smaller
/// tolerance finds smaller gouges in a program computed here.
pub const DEFAULT_TOLERANCE: f64 = 1e-3;

/// Default memory the stock's heights may take, bytes.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 << 20;

/// Default cell size as a fraction of the smallest tool's radius.
pub const DEFAULT_CELL_FRACTION: f64 = 0.1;

/// The feed of each move of a pass.
#[derive(Clone, Copy, Debug)]
pub enum PassFeeds<'a> {
    /// An operation's feeds: cuts at `feed`, plunges at `plunge_feed`.
    Operation(Feeds),
    /// One feed per move, mm/min (read from G-code; rapids carry 0).
    PerMove(&'a [f64]),
}

/// One tool's moves, as the stock sees them: an operation of a job, or the moves of a
/// G-code file between two tool changes.
#[derive(Clone, Copy, Debug)]
pub struct Pass<'a> {
    pub name: &'a str,
    pub tool_number: u32,
    pub cutter: Cutter,
    pub toolpath: &'a Toolpath,
    pub feeds: PassFeeds<'a>,
    /// The source line of each move, when read from a file.
    pub lines: Option<&'a [usize]>,
}

/// A move named for the machinist.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoveAt {
    /// Index into the pass's moves (0-based).
    pub index: usize,
    /// The G-code line it was read from.
    pub line: Option<usize>,
    pub kind: MoveKind,
    /// Where the move goes.
    pub to: Point3,
}

/// How one move met the material as it stood.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Engagement {
    /// How far the material stood above the tool's surface, mm.
    pub depth: f64,
    /// The extent across the move of the cells it cut by more than
    /// [`MATERIAL_TOLERANCE`], between their centres, mm.
    pub width: f64,
    pub at: MoveAt,
}

/// What one pass did to the stock.
#[derive(Clone, Debug, PartialEq)]
pub struct PassReport {
    pub name: String,
    pub tool_number: u32,
    pub cutter: Cutter,
    pub moves: usize,
    /// Material removed, mm³.
    pub removed_mm3: f64,
    /// Rapid moves that met material (the machine would crash or cut at rapid rate).
    pub rapids_in_material: usize,
    /// The first of them.
    pub first_rapid_in_material: Option<Engagement>,
    /// The feed move that cut deepest into the material as it stood.
    pub deepest_cut: Option<Engagement>,
    /// The feed move that cut widest.
    pub widest_cut: Option<Engagement>,
    /// Feed moves' length, mm, and time at their feed, s (no acceleration).
    pub feed_length_mm: f64,
    /// Length of the feed moves that cut nothing (no cell deeper than
    /// [`MATERIAL_TOLERANCE`]): links and passes in air, mm. What rest roughing saves.
    pub air_cut_mm: f64,
    pub feed_time_s: f64,
}

/// Why a simulation stopped.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimulateError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Input(String),
}

/// Machines `pass` into `stock`, batch by batch on the current rayon pool, calling
/// `progress(moves done, moves)` after each batch and stopping within a batch of `cancel`.
pub fn simulate_pass(
    stock: &mut StockModel,
    pass: &Pass<'_>,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PassReport, SimulateError> {
    let mut tally = PassTally::new(pass)?;
    let moves = pass.toolpath.moves.len();
    machine_moves(
        stock,
        &pass.cutter,
        pass.toolpath,
        0..moves,
        cancel,
        &mut |first, segments, hits| {
            for (k, hit) in hits.iter().enumerate() {
                tally.add(first + k, segments[k], hit);
            }
            progress(first + hits.len(), moves);
        },
    )?;
    Ok(tally.report)
}

/// A pass's report, built move by move, in order, from what each move did.
pub(crate) struct PassTally<'p> {
    pass: &'p Pass<'p>,
    pub report: PassReport,
}

impl<'p> PassTally<'p> {
    /// Checks the pass (its tool, one feed and one line number per move where given).
    pub fn new(pass: &'p Pass<'p>) -> Result<Self, SimulateError> {
        pass.cutter
            .validate()
            .map_err(|e| SimulateError::Input(format!("{}: {e}", pass.name)))?;
        let moves = &pass.toolpath.moves;
        // One feed and one line number per move, where the pass has them.
        let one_each = |what: &str, n: Option<usize>| match n {
            Some(n) if n != moves.len() => Err(SimulateError::Input(format!(
                "{}: {n} {what} for {} moves",
                pass.name,
                moves.len()
            ))),
            _ => Ok(()),
        };
        let feeds = match pass.feeds {
            PassFeeds::PerMove(f) => Some(f.len()),
            PassFeeds::Operation(_) => None,
        };
        one_each("feeds", feeds)?;
        one_each("line numbers", pass.lines.map(<[usize]>::len))?;
        let report = PassReport {
            name: pass.name.to_string(),
            tool_number: pass.tool_number,
            cutter: pass.cutter,
            moves: moves.len(),
            removed_mm3: 0.0,
            rapids_in_material: 0,
            first_rapid_in_material: None,
            deepest_cut: None,
            widest_cut: None,
            feed_length_mm: 0.0,
            air_cut_mm: 0.0,
            feed_time_s: 0.0,
        };
        Ok(Self { pass, report })
    }

    /// Counts move `index`, from `a` to `b`, which did `hit` to the stock.
    pub fn add(&mut self, index: usize, (a, b): (Point3, Point3), hit: &TileHit) {
        let (pass, report) = (self.pass, &mut self.report);
        let m = pass.toolpath.moves[index];
        if m.kind != MoveKind::Rapid {
            let len = (b - a).length();
            let feed = match pass.feeds {
                PassFeeds::Operation(f) => {
                    if m.kind == MoveKind::Plunge {
                        f.plunge_feed
                    } else {
                        f.feed
                    }
                }
                PassFeeds::PerMove(f) => f[index],
            };
            report.feed_length_mm += len;
            if hit.depth <= MATERIAL_TOLERANCE {
                report.air_cut_mm += len;
            }
            if feed > 0.0 {
                report.feed_time_s += len / feed * 60.0;
            }
        }
        report.removed_mm3 += hit.removed;
        if hit.depth <= MATERIAL_TOLERANCE {
            return;
        }
        let engagement = Engagement {
            depth: hit.depth,
            width: hit.width(),
            at: MoveAt {
                index,
                line: pass.lines.map(|l| l[index]),
                kind: m.kind,
                to: m.to,
            },
        };
        if m.kind == MoveKind::Rapid {
            report.rapids_in_material += 1;
            report.first_rapid_in_material.get_or_insert(engagement);
            return;
        }
        keep_max(&mut report.deepest_cut, engagement, |e| e.depth);
        keep_max(&mut report.widest_cut, engagement, |e| e.width);
    }
}

/// Machines `passes` into `stock` in order, each from the stock the one before left, on the
/// current rayon pool, and checks the stock against `target` after each (where there is
/// one). `progress(pass, moves done, moves)` after each batch. What `millpond simulate` and
/// the window's Simulate both run.
pub fn simulate_program(
    stock: &mut StockModel,
    passes: &[Pass<'_>],
    target: Option<&Target<'_>>,
    tolerance: f64,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<Vec<(PassReport, Option<Verification>)>, SimulateError> {
    let mut out = Vec::with_capacity(passes.len());
    for (k, pass) in passes.iter().enumerate() {
        let report = simulate_pass(stock, pass, cancel, &mut |done, all| progress(k, done, all))?;
        let check = target.map(|t| verify(stock, t, tolerance));
        out.push((report, check));
    }
    Ok(out)
}

/// What [`machine_moves`] calls after each batch: the index of its first move, its
/// segments (from, to) and what each did.
pub type BatchDone<'a> = dyn FnMut(usize, &[(Point3, Point3)], &[TileHit]) + 'a;

/// Machines the moves `range` of `toolpath` into `stock` with `cutter` (the moves before
/// `range.start` already machined), [`BATCH_MOVES`] at a time on the current rayon pool;
/// after each batch, `each(index of its first move, its segments, what each did)`. Stops
/// between batches when `cancel` is set.
pub fn machine_moves(
    stock: &mut StockModel,
    cutter: &Cutter,
    toolpath: &Toolpath,
    range: std::ops::Range<usize>,
    cancel: &CancelToken,
    each: &mut BatchDone<'_>,
) -> Result<(), SimulateError> {
    let moves = &toolpath.moves[range.clone()];
    let mut segments = Vec::with_capacity(BATCH_MOVES.min(moves.len()));
    let mut from = match range.start {
        0 => toolpath.start,
        n => toolpath.moves[n - 1].to,
    };
    for (b, batch) in moves.chunks(BATCH_MOVES).enumerate() {
        if cancel.is_cancelled() {
            return Err(SimulateError::Cancelled);
        }
        segments.clear();
        for m in batch {
            segments.push((from, m.to));
            from = m.to;
        }
        // The tool at a batch's first move's start was applied by the move before it,
        // unless that is the toolpath's start.
        let covered = range.start + b > 0;
        let hits = stock.machine_batch(cutter, &segments, covered, f64::INFINITY);
        each(range.start + b * BATCH_MOVES, &segments, &hits);
    }
    Ok(())
}

/// Keeps the engagement with the larger `key`; the earlier move on a tie.
fn keep_max(slot: &mut Option<Engagement>, e: Engagement, key: impl Fn(&Engagement) -> f64) {
    if slot.is_none_or(|s| key(&e) > key(&s)) {
        *slot = Some(e);
    }
}

/// What the stock should become: the model's top surface, and the floor where the model
/// does not reach.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub mesh: &'a Mesh,
    pub index: &'a TriangleIndex,
    /// The lowest the program is meant to cut (the setup's floor).
    pub floor: f64,
}

/// Upper ends of the remaining-material histogram's bins, mm (the last bin is open).
pub const HISTOGRAM_BINS: [f64; 9] = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0];

/// A point of the stock and its deviation from the model there.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Deviation {
    /// Stock top minus the target (negative: below the model), mm.
    pub deviation: f64,
    pub x: f64,
    pub y: f64,
}

/// How the stock compares with the model, cell by cell.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verification {
    pub tolerance: f64,
    pub cells: usize,
    /// The deepest cut below the model (beyond the tolerance), and where.
    pub gouge: Option<Deviation>,
    /// Cells cut below the model by more than the tolerance.
    pub gouge_cells: usize,
    /// Cells within the tolerance of the target.
    pub on_size_cells: usize,
    /// The most material left above the target, and where.
    pub remaining_max: Option<Deviation>,
    /// Mean material left above the target over all cells, mm.
    pub remaining_mean: f64,
    /// Material left above the target, mm³.
    pub remaining_mm3: f64,
    /// Cells left above the target by more than the tolerance, by amount: bin `k` counts
    /// those up to `HISTOGRAM_BINS[k]`, the last bin those beyond.
    pub histogram: [usize; HISTOGRAM_BINS.len() + 1],
}

impl Verification {
    fn empty(tolerance: f64) -> Self {
        Self {
            tolerance,
            cells: 0,
            gouge: None,
            gouge_cells: 0,
            on_size_cells: 0,
            remaining_max: None,
            remaining_mean: 0.0,
            remaining_mm3: 0.0,
            histogram: [0; HISTOGRAM_BINS.len() + 1],
        }
    }

    fn merge(&mut self, o: &Verification) {
        self.cells += o.cells;
        if let Some(g) = o.gouge
            && self.gouge.is_none_or(|s| g.deviation < s.deviation)
        {
            self.gouge = Some(g);
        }
        if let Some(g) = o.remaining_max
            && self.remaining_max.is_none_or(|s| g.deviation > s.deviation)
        {
            self.remaining_max = Some(g);
        }
        self.gouge_cells += o.gouge_cells;
        self.on_size_cells += o.on_size_cells;
        self.remaining_mm3 += o.remaining_mm3;
        for (a, b) in self.histogram.iter_mut().zip(o.histogram) {
            *a += b;
        }
    }
}

/// The target height of every cell of one tile (row by row): the highest point of the
/// model's triangles over the cell's centre, or `NaN` where no triangle covers it.
fn model_top(cells: &TileCells<'_>, target: &Target<'_>, cell: f64) -> Vec<f64> {
    let (_, (w, h)) = cells.extent();
    let mut top = vec![f64::NAN; w * h];
    let (x0, y0) = cells.origin();
    let rect = Rect::new(
        x0 - cell,
        x0 + w as f64 * cell,
        y0 - cell,
        y0 + h as f64 * cell,
    );
    let triangles = target.mesh.triangles();
    target.index.query(&rect, f64::NEG_INFINITY, |id| {
        raster_triangle(&triangles[id as usize], (x0, y0), cell, (w, h), &mut top);
    });
    top
}

/// Raises `top` to the triangle's height over every cell centre it covers (edges included:
/// a centre on an edge is covered by both triangles, which agree there).
fn raster_triangle(
    t: &Triangle,
    (x0, y0): (f64, f64),
    cell: f64,
    (w, h): (usize, usize),
    top: &mut [f64],
) {
    let [a, b, c] = t.v;
    let area = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
    let scale = (b.x - a.x).abs() + (b.y - a.y).abs() + (c.x - a.x).abs() + (c.y - a.y).abs();
    // A vertical triangle covers no centre that its neighbours do not.
    if area.abs() <= 1e-12 * scale * scale {
        return;
    }
    let (lx, hx) = (a.x.min(b.x).min(c.x), a.x.max(b.x).max(c.x));
    let (ly, hy) = (a.y.min(b.y).min(c.y), a.y.max(b.y).max(c.y));
    let first = |lo: f64, o: f64| ((lo - o) / cell).ceil().max(0.0) as usize;
    let last = |hi: f64, o: f64, n: usize| {
        let l = ((hi - o) / cell).floor();
        if l < 0.0 {
            None
        } else {
            Some((l as usize).min(n - 1))
        }
    };
    let (Some(i1), Some(j1)) = (last(hx, x0, w), last(hy, y0, h)) else {
        return;
    };
    let (i0, j0) = (first(lx, x0), first(ly, y0));
    let eps = -1e-12 * area.abs();
    for j in j0..=j1 {
        let y = y0 + j as f64 * cell;
        for i in i0..=i1 {
            let x = x0 + i as f64 * cell;
            // Signed areas against each edge, oriented with the triangle.
            let wa = ((b.x - x) * (c.y - y) - (b.y - y) * (c.x - x)) * area.signum();
            let wb = ((c.x - x) * (a.y - y) - (c.y - y) * (a.x - x)) * area.signum();
            let wc = ((a.x - x) * (b.y - y) - (a.y - y) * (b.x - x)) * area.signum();
            if wa < eps || wb < eps || wc < eps {
                continue;
            }
            let z = (wa * a.z + wb * b.z + wc * c.z) / area.abs();
            let k = j * w + i;
            if top[k].is_nan() || top[k] < z {
                top[k] = z;
            }
        }
    }
}

/// Calls `f((i, j), (x, y), stock top, model top, aim)` for every cell of one tile, row by row: the
/// model's top over the cell (`None` off the model) and the height the program should leave
/// there (the model's top, or the floor where the model does not reach or lies below it).
pub(crate) fn for_each_against(
    cells: &TileCells<'_>,
    target: &Target<'_>,
    cell: f64,
    mut f: impl FnMut((usize, usize), (f64, f64), f64, Option<f64>, f64),
) {
    let top = model_top(cells, target, cell);
    let mut k = 0;
    cells.for_each(|i, j, x, y, z| {
        let model = top[k];
        k += 1;
        if model.is_nan() {
            f((i, j), (x, y), z, None, target.floor)
        } else {
            f((i, j), (x, y), z, Some(model), model.max(target.floor))
        }
    });
}

/// Compares every cell of `stock` with `target`; a gouge is a cell more than `tolerance`
/// below the model. Runs a tile at a time on the current rayon pool.
pub fn verify(stock: &StockModel, target: &Target<'_>, tolerance: f64) -> Verification {
    let cell = stock.cell();
    let tiles = stock.fold_tiles(|cells| verify_tile(&cells, target, tolerance, cell));
    Verification::of_tiles(&tiles, tolerance, cell)
}

impl Verification {
    /// The whole stock's figures from its tiles', in tile order.
    pub(crate) fn of_tiles<'a>(
        tiles: impl IntoIterator<Item = &'a Verification>,
        tolerance: f64,
        cell: f64,
    ) -> Verification {
        let mut total = Verification::empty(tolerance);
        for t in tiles {
            total.merge(t);
        }
        if total.cells > 0 {
            total.remaining_mean = total.remaining_mm3 / (cell * cell) / total.cells as f64;
        }
        total
    }
}

/// How one tile's cells compare with `target` ([`verify`]).
pub(crate) fn verify_tile(
    cells: &TileCells<'_>,
    target: &Target<'_>,
    tolerance: f64,
    cell: f64,
) -> Verification {
    let area = cell * cell;
    let mut v = Verification::empty(tolerance);
    for_each_against(cells, target, cell, |_, (x, y), z, model, aim| {
        v.cells += 1;
        let left = z - aim;
        if let Some(model) = model
            && z < model - tolerance
        {
            v.gouge_cells += 1;
            let d = Deviation {
                deviation: z - model,
                x,
                y,
            };
            if v.gouge.is_none_or(|g| d.deviation < g.deviation) {
                v.gouge = Some(d);
            }
            return;
        }
        if left <= tolerance {
            v.on_size_cells += 1;
            return;
        }
        v.remaining_mm3 += left * area;
        let bin = HISTOGRAM_BINS
            .iter()
            .position(|&b| left <= b)
            .unwrap_or(HISTOGRAM_BINS.len());
        v.histogram[bin] += 1;
        if v.remaining_max.is_none_or(|m| left > m.deviation) {
            v.remaining_max = Some(Deviation {
                deviation: left,
                x,
                y,
            });
        }
    });
    v
}

/// A deviation map: one RGB pixel per cell, the stock's back edge (largest Y) at the top.
/// Gouges red, on size green, material left from pale yellow (a hundredth of a millimetre)
/// to dark blue (`full_scale` mm and more).
pub fn deviation_image(
    stock: &StockModel,
    target: &Target<'_>,
    tolerance: f64,
    full_scale: f64,
) -> (usize, usize, Vec<u8>) {
    let (nx, ny) = stock.size();
    let cell = stock.cell();
    let tiles = stock.fold_tiles(|cells| {
        let mut px = Vec::new();
        for_each_against(&cells, target, cell, |_, _, z, model, aim| {
            px.push(cell_colour(z, model, aim, tolerance, full_scale));
        });
        (cells.extent(), px)
    });
    let mut rgb = vec![0u8; nx * ny * 3];
    for (((i0, j0), (w, _)), px) in &tiles {
        for (k, c) in px.iter().enumerate() {
            let (i, j) = (i0 + k % w, j0 + k / w);
            let o = ((ny - 1 - j) * nx + i) * 3;
            rgb[o..o + 3].copy_from_slice(c);
        }
    }
    (nx, ny, rgb)
}

/// A cell's colour from what [`for_each_against`] says of it: the deviation map's and the
/// drawn surface's.
fn cell_colour(z: f64, model: Option<f64>, aim: f64, tolerance: f64, full_scale: f64) -> [u8; 3] {
    let gouge = model.is_some_and(|m| z < m - tolerance);
    deviation_colour(z - aim, gouge, tolerance, full_scale)
}

/// The colour of one cell of the deviation map (see [`deviation_image`]).
pub fn deviation_colour(left: f64, gouge: bool, tolerance: f64, full_scale: f64) -> [u8; 3] {
    if gouge {
        return [220, 30, 30];
    }
    if left <= tolerance {
        return [40, 190, 60];
    }
    let f = (left / full_scale.max(1e-9)).clamp(0.0, 1.0).sqrt();
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    [mix(250.0, 20.0), mix(235.0, 40.0), mix(150.0, 140.0)]
}

/// The machined stock's top surface for drawing: one vertex per sampled cell centre (every
/// `stride`-th cell, the smallest stride within `max_cells`), coloured as the deviation map
/// ([`deviation_colour`]), two triangles per square of four.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StockSurface {
    pub positions: Vec<[f32; 3]>,
    pub colors: Vec<[u8; 3]>,
    pub indices: Vec<u32>,
    /// Cells between two vertices.
    pub stride: usize,
}

/// See [`StockSurface`].
pub fn stock_surface(
    stock: &StockModel,
    target: &Target<'_>,
    tolerance: f64,
    full_scale: f64,
    max_cells: usize,
) -> StockSurface {
    let (nx, ny) = stock.size();
    let stride = sample_stride(nx, ny, max_cells);
    let (cols, rows) = (sampled(nx, stride), sampled(ny, stride));
    // Where each drawn cell goes in the surface (`usize::MAX`: not drawn): only those are
    // read and coloured, a tile at a time, not the whole stock (every playback frame).
    let place = |all: usize, picked: &[usize]| {
        let mut at = vec![usize::MAX; all];
        for (k, &i) in picked.iter().enumerate() {
            at[i] = k;
        }
        at
    };
    let (col_at, row_at) = (place(nx, &cols), place(ny, &rows));
    let w = cols.len();
    let drawn = stock.fold_tiles(|cells| {
        let mut out = Vec::new();
        for_each_against(
            &cells,
            target,
            stock.cell(),
            |(i, j), (x, y), z, model, aim| {
                let (c, r) = (col_at[i], row_at[j]);
                if c != usize::MAX && r != usize::MAX {
                    let colour = cell_colour(z, model, aim, tolerance, full_scale);
                    out.push((r * w + c, [x as f32, y as f32, z as f32], colour));
                }
            },
        );
        out
    });
    let n = cols.len() * rows.len();
    let mut out = StockSurface {
        positions: vec![[0.0; 3]; n],
        colors: vec![[0; 3]; n],
        indices: Vec::new(),
        stride,
    };
    for (k, p, c) in drawn.into_iter().flatten() {
        out.positions[k] = p;
        out.colors[k] = c;
    }
    let w = cols.len() as u32;
    for r in 0..rows.len().saturating_sub(1) as u32 {
        for c in 0..w.saturating_sub(1) {
            let (a, b) = (r * w + c, r * w + c + 1);
            let (d, e) = (a + w, b + w);
            out.indices.extend([a, b, e, a, e, d]);
        }
    }
    // Walls down to the stock's bottom around the edge, in the edge's colours: a block, not a
    // sheet floating at the top of the stock box.
    let h = rows.len() as u32;
    let mut ring: Vec<u32> = (0..w).collect();
    ring.extend((1..h).map(|r| r * w + w - 1));
    ring.extend((0..w.saturating_sub(1)).rev().map(|c| (h - 1) * w + c));
    ring.extend((1..h.saturating_sub(1)).rev().map(|r| r * w));
    let bottom = stock.z_range().0 as f32;
    let base = out.positions.len() as u32;
    for &k in &ring {
        let [x, y, _] = out.positions[k as usize];
        out.positions.push([x, y, bottom]);
        out.colors.push(out.colors[k as usize]);
    }
    let n = ring.len() as u32;
    for q in 0..n {
        let (a, b) = (ring[q as usize], ring[((q + 1) % n) as usize]);
        let (la, lb) = (base + q, base + (q + 1) % n);
        // The ring runs counter-clockwise seen from above: outward-facing walls.
        out.indices.extend([a, la, lb, a, lb, b]);
    }
    out
}

/// The smallest stride that keeps a grid of `nx × ny` cells within `max_cells`.
fn sample_stride(nx: usize, ny: usize, max_cells: usize) -> usize {
    let mut stride = 1;
    while nx.div_ceil(stride) * ny.div_ceil(stride) > max_cells.max(4) {
        stride += 1;
    }
    stride
}

/// Every `stride`-th index below `n`, and always the last.
fn sampled(n: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).step_by(stride).collect();
    if *v.last().unwrap_or(&0) != n - 1 {
        v.push(n - 1);
    }
    v
}

/// The machined stock as a closed triangle mesh: its top surface through the cell centres
/// (every `stride`-th cell, the smallest stride that keeps within `max_cells` cells), walls
/// down to the stock bottom, and the bottom.
pub fn stock_triangles(stock: &StockModel, max_cells: usize) -> (usize, Vec<Triangle>) {
    let (nx, ny) = stock.size();
    let stride = sample_stride(nx, ny, max_cells);
    let (cols, rows) = (sampled(nx, stride), sampled(ny, stride));
    let heights = stock.heights();
    let bottom = stock.z_range().0;
    let p = |i: usize, j: usize| {
        let (x, y) = stock.centre(i, j);
        Point3::new(x, y, heights[j * nx + i] as f64)
    };
    let mut tris = Vec::new();
    for jr in rows.windows(2) {
        for ic in cols.windows(2) {
            let (a, b, c, d) = (
                p(ic[0], jr[0]),
                p(ic[1], jr[0]),
                p(ic[1], jr[1]),
                p(ic[0], jr[1]),
            );
            tris.push(Triangle::new(a, b, c));
            tris.push(Triangle::new(a, c, d));
        }
    }
    // The boundary, counter-clockwise seen from above.
    let mut ring: Vec<(usize, usize)> = Vec::new();
    ring.extend(cols.iter().map(|&i| (i, rows[0])));
    ring.extend(rows[1..].iter().map(|&j| (*cols.last().unwrap_or(&0), j)));
    ring.extend(
        cols.iter()
            .rev()
            .skip(1)
            .map(|&i| (i, *rows.last().unwrap_or(&0))),
    );
    ring.extend(rows.iter().rev().skip(1).map(|&j| (cols[0], j)));
    let low = |q: Point3| Point3::new(q.x, q.y, bottom);
    let (cx, cy) = stock.centre(
        (cols[0] + cols[cols.len() - 1]) / 2,
        (rows[0] + rows[rows.len() - 1]) / 2,
    );
    let centre = Point3::new(cx, cy, bottom);
    for k in 0..ring.len() {
        let (u, v) = (ring[k], ring[(k + 1) % ring.len()]);
        if u == v {
            continue;
        }
        let (a, b) = (p(u.0, u.1), p(v.0, v.1));
        // Walls facing out, the bottom facing down.
        tris.push(Triangle::new(a, low(a), low(b)));
        tris.push(Triangle::new(a, low(b), b));
        tris.push(Triangle::new(centre, low(b), low(a)));
    }
    (stride, tris)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutter::Shape;
    use crate::geom::Aabb;
    use crate::stock_model::SweptMove;
    use crate::stock_model::tests::{cuts, path as toolpath};
    use crate::with_shape;

    const CUTTERS: [Cutter; 4] = [
        Cutter::Flat { diameter: 6.0 },
        Cutter::Ball { diameter: 6.0 },
        Cutter::Bull {
            diameter: 6.0,
            corner_radius: 1.0,
        },
        Cutter::VBit {
            diameter: 6.0,
            included_angle: 90.0,
        },
    ];

    fn block(top: f64) -> Aabb {
        Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(40.0, 20.0, top),
        }
    }

    fn pass<'a>(name: &'a str, cutter: Cutter, tp: &'a Toolpath) -> Pass<'a> {
        Pass {
            name,
            tool_number: 1,
            cutter,
            toolpath: tp,
            feeds: PassFeeds::Operation(Feeds::default()),
            lines: None,
        }
    }

    fn run(stock: &mut StockModel, p: &Pass<'_>) -> PassReport {
        simulate_pass(stock, p, &CancelToken::new(), &mut |_, _| {}).unwrap()
    }

    #[test]
    fn a_straight_move_leaves_each_cutters_exact_groove() {
        for cutter in CUTTERS {
            // A level cut along X at y = 10.025 (a cell centre row), 2 mm into a 10 mm block.
            let mut stock = StockModel::new(block(10.0), 0.05).unwrap();
            let y = 10.025;
            let tp = cuts(&[[5.0, y, 8.0], [35.0, y, 8.0]]);
            let r = run(&mut stock, &pass("groove", cutter, &tp));
            assert!((r.deepest_cut.unwrap().depth - 2.0).abs() < 1e-9, "{r:?}");
            let (_, ny) = stock.size();
            // Across the middle of the move: the profile itself, rounded once to f32.
            let i = 400; // x = 20.025
            for j in 0..ny {
                let (_, cy) = stock.centre(i, j);
                let d = (cy - y).abs();
                let exact = if d <= 3.0 {
                    (8.0 + cutter.height_at(d)).min(10.0)
                } else {
                    10.0
                };
                let stored = 10.0 + ((exact - 10.0) as f32) as f64;
                assert_eq!(stock.height(i, j), stored, "{cutter:?} at d = {d}");
            }
            // The exact surface itself, in f64, to 1e-9 (sloped moves too).
            let profile = cutter.profile();
            with_shape!(&profile, p => {
                let a = Point3::new(5.0, 10.0, 9.0);
                let b = Point3::new(35.0, 10.0, 6.0);
                let mv = SweptMove::new(p, a, b);
                for k in 0..60 {
                    let (x, cy) = (20.0, 10.0 + k as f64 * 0.05);
                    let d = cy - 10.0;
                    let got = mv.lowest_below(p, x, cy, f64::INFINITY);
                    if d > 3.0 {
                        assert_eq!(got, None);
                        continue;
                    }
                    // Brute force over the move, refined around the best sample.
                    let f = |t: f64| {
                        let px = 5.0 + 30.0 * t;
                        let rho = ((px - x).powi(2) + d * d).sqrt();
                        if rho > 3.0 { f64::INFINITY } else { 9.0 - 3.0 * t + p.height(rho) }
                    };
                    let mut best = (0.0, f64::INFINITY);
                    for s in 0..=30_000 {
                        let t = s as f64 / 30_000.0;
                        if f(t) < best.1 {
                            best = (t, f(t));
                        }
                    }
                    let (mut lo, mut hi) = ((best.0 - 1e-4f64).max(0.0), (best.0 + 1e-4f64).min(1.0));
                    for _ in 0..200 {
                        let (m1, m2) = (lo + (hi - lo) / 3.0, hi - (hi - lo) / 3.0);
                        if f(m1) <= f(m2) { hi = m2 } else { lo = m1 }
                    }
                    let want = f(lo).min(best.1);
                    let got = got.unwrap();
                    assert!((got - want).abs() < 1e-9, "{cutter:?} d = {d}: {got} vs {want}");
                }
            });
        }
    }

    #[test]
    fn moves_along_an_axis_take_the_same_contact_as_any_other() {
        // Sloped moves along +X, -X, +Y and -Y (the fast path for raster moves), checked
        // cell by cell against the general sweep of the same moves.
        let tp = cuts(&[
            [5.0, 5.0, 9.5],
            [30.0, 5.0, 7.0],
            [30.0, 15.0, 8.0],
            [8.0, 15.0, 6.5],
            [8.0, 6.0, 9.0],
            [8.0, 6.0, 8.0],
        ]);
        for cutter in CUTTERS {
            let mut stock = StockModel::new(block(10.0), 0.1).unwrap();
            run(&mut stock, &pass("axes", cutter, &tp));
            assert_as_swept(cutter, &tp, &stock, 1);
        }
    }

    /// Holds every `every`-th cell of `stock` to the general sweep of every move of `tp`, cell
    /// by cell, from a 10 mm top, to 2e-6: what the fast paths are held to.
    fn assert_as_swept(cutter: Cutter, tp: &Toolpath, stock: &StockModel, every: usize) {
        let profile = cutter.profile();
        let (nx, ny) = stock.size();
        with_shape!(&profile, p => {
            let mut from = tp.start;
            let moves: Vec<SweptMove> = tp
                .moves
                .iter()
                .map(|m| {
                    let mv = SweptMove::new(p, from, m.to);
                    from = m.to;
                    mv
                })
                .collect();
            for j in (0..ny).step_by(every) {
                for i in (0..nx).step_by(every) {
                    let (x, y) = stock.centre(i, j);
                    let want = moves
                        .iter()
                        .filter_map(|mv| mv.lowest_below(p, x, y, 10.0))
                        .fold(10.0f64, f64::min);
                    let got = stock.height(i, j);
                    assert!(
                        (got - want).abs() < 2e-6,
                        "{cutter:?} at {i} {j}: {got} vs {want}"
                    );
                }
            }
        })
    }

    /// A raster over a bumpy terrain: lines along X, then along Y, both ways, each a chain
    /// of 0.1 mm moves whose slope changes at every point (convex and concave bends, steep
    /// and level), stepping over by 0.4 mm, deep enough into the block to cut everywhere.
    /// A zigzag raster of `lines` lines of `points` points, `step` (across, along) apart from
    /// `first` (across, along), along X or Y, at heights `z(x, y)`: a rapid to each line's
    /// first point, cuts along it.
    fn zigzag(
        along_x: bool,
        (lines, points): (usize, usize),
        first: (f64, f64),
        step: (f64, f64),
        z: impl Fn(f64, f64) -> f64,
    ) -> Toolpath {
        let mut tp = Toolpath::new(Point3::new(first.0, first.1, 15.0));
        for k in 0..lines {
            let across = first.0 + step.0 * k as f64;
            for n in 0..points {
                let along = first.1 + step.1 * if k % 2 == 0 { n } else { points - 1 - n } as f64;
                let (x, y) = if along_x {
                    (along, across)
                } else {
                    (across, along)
                };
                let kind = if n == 0 {
                    MoveKind::Rapid
                } else {
                    MoveKind::Cut
                };
                tp.push(kind, Point3::new(x, y, z(x, y)));
            }
        }
        tp
    }

    fn terrain_raster(along_x: bool) -> Toolpath {
        let z =
            |x: f64, y: f64| 6.0 + 1.5 * (x * 0.7).sin() * (y * 0.9).cos() + 0.3 * (x * 3.1).sin();
        let size = if along_x { (25, 321) } else { (81, 121) };
        zigzag(along_x, size, (4.0, 4.0), (0.4, 0.1), z)
    }

    #[test]
    fn a_raster_of_short_moves_leaves_the_same_stock_as_each_move_alone() {
        // The chains of a raster skip the caps each next move covers: the same lowest tool
        // over every cell as move by move, and as the general sweep cell by cell.
        for cutter in CUTTERS {
            for along_x in [true, false] {
                let tp = terrain_raster(along_x);
                let mut chained = StockModel::new(block(10.0), 0.07).unwrap();
                let report = run(&mut chained, &pass("terrain", cutter, &tp));
                let mut alone = StockModel::new(block(10.0), 0.07).unwrap();
                alone.machine_move_by_move(&cutter, &tp);
                let (nx, ny) = chained.size();
                let mut removed = 0.0;
                for j in 0..ny {
                    for i in 0..nx {
                        let (a, b) = (chained.height(i, j), alone.height(i, j));
                        assert_eq!(a, b, "{cutter:?} at {i} {j}");
                        removed += (10.0 - a) * 0.07 * 0.07;
                    }
                }
                assert!(
                    (report.removed_mm3 - removed).abs() < 1e-6 * removed,
                    "{cutter:?}: {} vs {removed}",
                    report.removed_mm3
                );
                // Every cutting move of a line reaches material the lines before left: none
                // cuts air, and the deepest cut is the deepest loss of any cell.
                let deepest = (0..ny)
                    .flat_map(|j| (0..nx).map(move |i| (i, j)))
                    .map(|(i, j)| 10.0 - chained.height(i, j))
                    .fold(0.0, f64::max);
                let cut = report.deepest_cut.unwrap();
                assert!(
                    cut.depth <= deepest + 1e-6,
                    "{cutter:?}: {cut:?} vs {deepest}"
                );
                assert!(
                    cut.depth > 0.5 * deepest,
                    "{cutter:?}: {cut:?} vs {deepest}"
                );
                assert_as_swept(cutter, &tp, &chained, 6);
            }
        }
    }

    #[test]
    fn a_ball_raster_over_a_plane_leaves_its_scallops() {
        let (r, s) = (1.5, 0.5);
        let mut stock = StockModel::new(block(10.0), 0.05).unwrap();
        let ball = Cutter::Ball { diameter: 2.0 * r };
        let mut tp = Toolpath::new(Point3::new(2.0, 0.025, 15.0));
        for k in 0..40 {
            let y = 0.025 + s * k as f64;
            let (x0, x1) = if k % 2 == 0 { (2.0, 38.0) } else { (38.0, 2.0) };
            tp.push(MoveKind::Cut, Point3::new(x0, y, 9.0));
            tp.push(MoveKind::Cut, Point3::new(x1, y, 9.0));
        }
        run(&mut stock, &pass("raster", ball, &tp));
        let scallop = r - (r * r - (s / 2.0) * (s / 2.0)).sqrt();
        for k in 2..36 {
            // Midway between two lines, and on a line.
            let mid = stock.height(400, 5 + 10 * k);
            let on = stock.height(400, 10 * k);
            assert!((mid - (9.0 + scallop)).abs() < 1e-6, "{mid} vs {scallop}");
            assert!((on - 9.0).abs() < 1e-6, "{on}");
        }
    }

    #[test]
    fn an_arc_leaves_a_ring() {
        // A flat 2 mm end mill around a circle of radius 6 about (20, 10), in 400 chords.
        let flat = Cutter::Flat { diameter: 2.0 };
        let mut stock = StockModel::new(block(10.0), 0.05).unwrap();
        let mut tp = Toolpath::new(Point3::new(26.0, 10.0, 9.0));
        for k in 1..=400 {
            let a = k as f64 / 400.0 * std::f64::consts::TAU;
            tp.push(
                MoveKind::Cut,
                Point3::new(20.0 + 6.0 * a.cos(), 10.0 + 6.0 * a.sin(), 9.0),
            );
        }
        run(&mut stock, &pass("ring", flat, &tp));
        // Chords sag 6·(1 - cos(π/400)) = 0.18 µm inside the circle.
        let sag = 6.0 * (1.0 - (std::f64::consts::PI / 400.0).cos());
        let (nx, ny) = stock.size();
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = stock.centre(i, j);
                let rho = (x - 20.0).hypot(y - 10.0);
                let h = stock.height(i, j);
                if (rho - 6.0).abs() < 1.0 - sag - 1e-9 {
                    assert_eq!(h, 9.0, "inside the ring at {x} {y}");
                } else if (rho - 6.0).abs() > 1.0 + 1e-9 {
                    assert_eq!(h, 10.0, "outside the ring at {x} {y}");
                }
            }
        }
    }

    #[test]
    fn engagement_names_the_deepest_and_widest_cuts_and_rapids_into_material() {
        let flat = Cutter::Flat { diameter: 6.0 };
        let mut stock = StockModel::new(block(10.0), 0.125).unwrap();
        let tp = toolpath(
            Point3::new(5.0, 10.0625, 20.0),
            &[
                // Rapid into 1 mm of material: a collision.
                (MoveKind::Rapid, [5.0, 10.0625, 9.0]),
                (MoveKind::Plunge, [5.0, 10.0625, 7.0]),
                // A full-width slot 3 mm deep, then a 1 mm deeper pass half a tool over.
                (MoveKind::Cut, [30.0, 10.0625, 7.0]),
                (MoveKind::Cut, [30.0, 13.0625, 6.0]),
                (MoveKind::Cut, [10.0, 13.0625, 6.0]),
                (MoveKind::Rapid, [10.0, 13.0625, 20.0]),
            ],
        );
        let r = run(&mut stock, &pass("slots", flat, &tp));
        assert_eq!(r.rapids_in_material, 1, "{r:?}");
        let rapid = r.first_rapid_in_material.unwrap();
        assert_eq!(rapid.at.index, 0);
        assert!((rapid.depth - 1.0).abs() < 1e-6);
        let deepest = r.deepest_cut.unwrap();
        // The step over goes 1 mm deeper into the 10 mm top beside the slot: 4 mm.
        assert_eq!(deepest.at.index, 3, "{r:?}");
        assert!((deepest.depth - 4.0).abs() < 1e-6, "{deepest:?}");
        let widest = r.widest_cut.unwrap();
        assert_eq!(widest.at.index, 2, "{r:?}");
        // The slot: every cell centre within 3 mm across (centres fall on ±3 exactly).
        assert!((widest.width - 6.0).abs() < 1e-9, "{widest:?}");
        // The removed volume is the union of the cuts: measured cell by cell.
        let (nx, ny) = stock.size();
        let mut removed = 0.0;
        for j in 0..ny {
            for i in 0..nx {
                removed += (10.0 - stock.height(i, j)) * 0.015625;
            }
        }
        assert!(
            (r.removed_mm3 - removed).abs() < 1e-6 * removed,
            "{r:?} {removed}"
        );
        let feed = Feeds::default();
        let want = (2.0 / feed.plunge_feed + (25.0 + 3.0f64.hypot(1.0) + 20.0) / feed.feed) * 60.0;
        assert!((r.feed_time_s - want).abs() < 1e-9, "{}", r.feed_time_s);
    }

    /// A program over a terrain, with moves in every direction and slope.
    fn wandering(n: usize) -> Toolpath {
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut tp = Toolpath::new(Point3::new(20.0, 10.0, 12.0));
        for _ in 0..n {
            let kind = if next() < 0.1 {
                MoveKind::Rapid
            } else {
                MoveKind::Cut
            };
            tp.push(
                kind,
                Point3::new(next() * 40.0, next() * 20.0, 4.0 + next() * 7.0),
            );
        }
        tp
    }

    #[test]
    fn tiles_give_the_same_stock_whatever_the_thread_count_and_as_move_by_move() {
        let tp = wandering(3000);
        let mut results = Vec::new();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // 0.07 mm cells: 572 × 286, five tiles by three, edge tiles partial.
            let mut stock = StockModel::new(block(10.0), 0.07).unwrap();
            let reports: Vec<PassReport> = pool.install(|| {
                CUTTERS
                    .iter()
                    .map(|&c| run(&mut stock, &pass("wander", c, &tp)))
                    .collect()
            });
            results.push((stock.heights(), reports));
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        // The sequential, move-by-move path gives the same heights.
        let mut seq = StockModel::new(block(10.0), 0.07).unwrap();
        for c in CUTTERS {
            seq.machine_move_by_move(&c, &tp);
        }
        assert_eq!(seq.heights(), results[0].0);
        // And so does any tiling: each cell's height is its own, whichever tile holds it.
        for side in [8, 24, 64] {
            let mut tiled = StockModel::with_tiles(block(10.0), 0.07, usize::MAX, side).unwrap();
            for c in CUTTERS {
                tiled.machine(&c, &tp, f64::INFINITY);
            }
            assert_eq!(tiled.heights(), results[0].0, "tiles of {side} cells");
        }
    }

    #[test]
    fn a_gouge_of_one_micron_is_found_and_located() {
        // A 30 × 10 × 5 mm block on a 40 × 20 × 10 mm stock; a flat tool faces the whole top
        // down to 5 mm, then one move 1 µm into the block around (20, 10).
        let model = block_model(5.0);
        let index = TriangleIndex::new(&model);
        let target = Target {
            mesh: &model,
            index: &index,
            floor: 0.0,
        };
        let flat = Cutter::Flat { diameter: 4.0 };
        let mut face = Toolpath::new(Point3::new(-3.0, -3.0, 5.0));
        for k in 0..=13 {
            let y = -3.0 + 2.0 * k as f64;
            face.push(MoveKind::Cut, Point3::new(-3.0, y, 5.0));
            face.push(MoveKind::Cut, Point3::new(43.0, y, 5.0));
        }
        let mut stock = StockModel::new(block(10.0), 0.05).unwrap();
        run(&mut stock, &pass("face", flat, &face));
        let clean = verify(&stock, &target, 5e-4);
        assert_eq!(clean.gouge, None, "{clean:?}");
        assert_eq!(clean.cells, 800 * 400);
        // Beside the block, 5 mm stand above the floor.
        let max = clean.remaining_max.unwrap();
        assert!((max.deviation - 5.0).abs() < 1e-6, "{max:?}");
        let bad = toolpath(
            Point3::new(18.0, 10.0, 6.0),
            &[
                (MoveKind::Plunge, [18.0, 10.0, 4.999]),
                (MoveKind::Cut, [22.0, 10.0, 4.999]),
            ],
        );
        run(&mut stock, &pass("gouge", flat, &bad));
        // Half a micron: below the program's one micron.
        let v = verify(&stock, &target, 5e-4);
        let g = v.gouge.unwrap();
        assert!((g.deviation + 0.001).abs() < 1e-6, "{g:?}");
        assert!(
            (16.0..=24.0).contains(&g.x) && (8.0..=12.0).contains(&g.y),
            "{g:?}"
        );
        // Every cell within the tool's reach of the move, and no other.
        let cells_near = {
            let (nx, ny) = stock.size();
            let mut n = 0;
            for j in 0..ny {
                for i in 0..nx {
                    let (x, y) = stock.centre(i, j);
                    let d = if x < 18.0 {
                        (x - 18.0).hypot(y - 10.0)
                    } else if x > 22.0 {
                        (x - 22.0).hypot(y - 10.0)
                    } else {
                        (y - 10.0).abs()
                    };
                    n += usize::from(d <= 2.0);
                }
            }
            n
        };
        assert_eq!(v.gouge_cells, cells_near);
        let (w, h, rgb) = deviation_image(&stock, &target, 5e-4, 5.0);
        assert_eq!((w, h, rgb.len()), (800, 400, 800 * 400 * 3));
        // (20, 10) is gouged: red; (10, 10) on the block's top is on size: green.
        let px = |x: f64, y: f64| {
            let (i, j) = ((x / 0.05) as usize, (y / 0.05) as usize);
            let o = ((h - 1 - j) * w + i) * 3;
            [rgb[o], rgb[o + 1], rgb[o + 2]]
        };
        assert_eq!(px(20.0, 10.0), [220, 30, 30]);
        assert_eq!(px(10.0, 10.0), [40, 190, 60]);
    }

    /// A raster of 0.1 mm moves over the whole block, more than one batch long, so that its
    /// lines run across batch boundaries.
    fn long_raster() -> Toolpath {
        let z = |x: f64, y: f64| 7.0 + (x * 0.5).sin() * (y * 0.7).cos();
        zigzag(true, (190, 381), (1.0, 1.0), (0.095, 0.1), z)
    }

    /// A 30 × 10 mm block `top` mm tall in the middle of the stock `block`.
    fn block_model(top: f64) -> Mesh {
        let (lo, hi) = (Point3::new(5.0, 5.0, 0.0), Point3::new(35.0, 15.0, top));
        Mesh::from_triangles(crate::models::box_solid(lo, hi), "block").unwrap()
    }

    #[test]
    fn a_simulation_in_chunks_of_tiles_leaves_the_batch_by_batch_stock_and_figures() {
        use crate::sim_job::{Model, ProgramMoves, SimulationJob};
        use std::sync::Arc;
        let model = Model {
            mesh: Arc::new(block_model(6.5)),
            index: Arc::new(TriangleIndex::new(&block_model(6.5))),
            floor: 0.0,
        };
        let target = Target {
            mesh: &model.mesh,
            index: &model.index,
            floor: 0.0,
        };
        let (wander, raster) = (wandering(400), long_raster());
        assert!(raster.moves.len() > BATCH_MOVES);
        let mut passes: Vec<Pass<'_>> = CUTTERS
            .iter()
            .map(|&c| pass("wander", c, &wander))
            .collect();
        passes.insert(0, pass("raster", CUTTERS[1], &raster));
        // 0.06 mm cells: 667 × 334, six tiles by three, the last row and column partial.
        let (stock_box, cell) = (block(10.0), 0.06);
        let mut stock = StockModel::new(stock_box, cell).unwrap();
        let cancel = CancelToken::new();
        let batched = simulate_program(
            &mut stock,
            &passes,
            Some(&target),
            1e-3,
            &cancel,
            &mut |_, _, _| {},
        )
        .unwrap();
        let program = Arc::new(ProgramMoves::of(&passes));
        let mut runs = Vec::new();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let model = Some(model.clone());
            let job = SimulationJob::new(stock_box, cell, usize::MAX, program.clone(), model, 1e-3)
                .unwrap();
            assert!(job.chunk_count() > 1);
            runs.push(
                pool.install(|| job.run(&passes, &cancel, &|_, _| {}))
                    .unwrap(),
            );
        }
        // Whatever the threads, the same bits.
        assert_eq!(runs[0], runs[1]);
        let (chunked, reports) = &runs[0];
        // Every cell as the batches left it.
        assert_eq!(chunked.heights(), stock.heights());
        // And every figure of every pass: each move's cuts merged in tile order, the moves
        // tallied in program order, each tile's check merged in tile order, as batches do.
        assert_eq!(reports, &batched);
        // The raster and the first wander cut material, and something is left.
        let cut = |k: usize| batched[k].0.deepest_cut.is_some() && batched[k].0.removed_mm3 > 0.0;
        assert!(cut(0) && cut(1), "{batched:?}");
        assert!(
            batched
                .last()
                .unwrap()
                .1
                .as_ref()
                .unwrap()
                .remaining_max
                .is_some()
        );
        // A cancelled job stops.
        let stopped = CancelToken::new();
        stopped.cancel();
        let job = SimulationJob::new(stock_box, cell, usize::MAX, program, None, 1e-3).unwrap();
        assert_eq!(
            job.run(&passes, &stopped, &|_, _| {}),
            Err(SimulateError::Cancelled)
        );
        // Results put together only when every chunk is there once, each of its shape.
        let all: Vec<_> = (0..job.chunk_count())
            .map(|c| job.run_chunk(c, &cancel).unwrap())
            .collect();
        assert!(job.finish(all[1..].to_vec(), &passes).is_err());
        let mut twice = all.clone();
        twice[1] = all[0].clone();
        assert!(job.finish(twice, &passes).is_err());
        let mut foreign = all.clone();
        foreign[0].passes[0].cuts[0].push(crate::sim_job::MoveCut {
            index: u32::MAX,
            depth: 1.0,
            removed: 1.0,
            across: (0.0, 1.0),
        });
        assert!(job.finish(foreign, &passes).is_err());
        // A tile's cuts out of move order, or twice the same move.
        let (c, t) = (0..all.len())
            .flat_map(|c| (0..all[c].heights.len()).map(move |t| (c, t)))
            .find(|&(c, t)| all[c].passes[0].cuts[t].len() > 1)
            .unwrap();
        let mut swapped = all.clone();
        swapped[c].passes[0].cuts[t].swap(0, 1);
        assert!(job.finish(swapped, &passes).is_err());
        let mut doubled = all.clone();
        let first = doubled[c].passes[0].cuts[t][0];
        doubled[c].passes[0].cuts[t][1] = first;
        assert!(job.finish(doubled, &passes).is_err());
        let mut torn = all.clone();
        torn[0].heights[0].pop();
        assert!(job.finish(torn, &passes).is_err());
        // Nor with passes other than the program's.
        assert!(job.finish(all.clone(), &passes[1..]).is_err());
        let mut other = passes.clone();
        other[0].cutter = CUTTERS[0];
        assert!(job.finish(all.clone(), &other).is_err());
        let (stock_again, no_checks) = job.finish(all, &passes).unwrap();
        assert_eq!(stock_again.heights(), stock.heights());
        assert!(no_checks.iter().all(|(_, c)| c.is_none()));
    }

    #[test]
    fn the_machined_stock_is_a_closed_mesh() {
        let mut stock = StockModel::new(block(10.0), 0.25).unwrap();
        run(&mut stock, &pass("wander", CUTTERS[1], &wandering(50)));
        for max_cells in [1_000_000, 500] {
            let (stride, tris) = stock_triangles(&stock, max_cells);
            assert!(stride >= 1);
            // Every edge is shared by exactly two triangles, in opposite directions.
            let mut edges = std::collections::HashMap::new();
            let key = |p: Point3| (p.x.to_bits(), p.y.to_bits(), p.z.to_bits());
            for t in &tris {
                for k in 0..3 {
                    let (a, b) = (key(t.v[k]), key(t.v[(k + 1) % 3]));
                    *edges.entry((a, b)).or_insert(0) += 1;
                }
            }
            for (&(a, b), &n) in &edges {
                assert_eq!(n, 1, "edge used twice the same way");
                assert_eq!(edges.get(&(b, a)), Some(&1), "open edge");
            }
            let mesh = Mesh::from_triangles(tris, "stock").unwrap();
            let bounds = mesh.bounds();
            assert_eq!(bounds.min.z, 0.0);
            assert!(bounds.max.z <= 10.0);
        }
    }
}
