//! CPU-side vertex data: what the view uploads for a model, a stock box and a toolpath. Pure
//! conversions from core types (the cheap part on the UI thread, the rest on a preparation
//! thread), handed to the GL side to upload once.
//!
//! Toolpaths are big (a fine raster has a million points) and software GL pays per segment,
//! visible or not. So a toolpath is uploaded as a few levels of detail — the full path, then
//! simplified copies for when a pixel covers more than the simplification tolerance — each
//! binned by place into the same grid of cells, in chunks with bounding boxes. The view draws
//! only the cells on screen, each at the coarsest level that is still under half a pixel from
//! the real path at that cell's distance: zoomed out, coarse levels; zoomed in, full detail
//! for the few cells in view.

use millpond_core::Cutter;
use millpond_core::toolpath::MoveKind;
use millpond_core::{Aabb, Mesh, Point3, Toolpath};
use std::collections::HashMap;
use three_d::Vec3;

/// Colour slots of the line shader (`u_colors[kind]`).
pub const KIND_RAPID: u8 = 0;
pub const KIND_PLUNGE: u8 = 1;
pub const KIND_CUT: u8 = 2;
pub const KIND_EDGE: u8 = 3;
/// Not a colour: the "segment" ending at this point is a jump between two separate pieces
/// of a preview, and is not drawn (see [`Polyline::from_pieces`]).
const KIND_GAP: u8 = u8::MAX;

/// Segments per chunk (one draw call each): a cell holds about half as many, so a chunk is
/// mostly a whole cell; the cap keeps each chunk's texture small.
pub const CHUNK_SEGMENTS: usize = 16384;

/// Simplified levels, as fractions of the toolpath's diagonal; each is 4× the previous. Level 0
/// (the full path) is always there. The finest is already worth having on smooth surfaces
/// (a chord of a 40 mm radius within 0.01 mm is 2 mm long, twenty 0.1 mm samples).
const LEVEL_TOLERANCES: [f32; 4] = [1e-4, 4e-4, 1.6e-3, 6.4e-3];

/// How many points the simplification may merge into one segment: bounds its cost at
/// O(points × MERGE_CAP) whatever the path looks like.
const MERGE_CAP: usize = 32;

/// A model as an indexed triangle mesh: each corner position once. The shader takes facet
/// normals from the screen-space derivatives of the position, so flat shading needs no
/// per-facet vertices (a third of the vertex work of a triangle soup with facet normals).
#[derive(Debug, Default)]
pub struct ModelData {
    pub positions: Vec<Vec3>,
    pub indices: Vec<u32>,
}

/// Line segments, drawn as screen-space quads. Stored as the texels of a float texture the
/// line shader fetches from: two per segment, the start with the colour slot in `w`, then
/// the end with the number of the move it ends (1-based; 0 for what is not a move), so the
/// shader can draw a toolpath up to a move (see [`super::gpu`] for why not vertex
/// attributes). An f32 counts moves exactly up to 16.7 million.
#[derive(Debug, Default)]
pub struct Chunk {
    pub texels: Vec<[f32; 4]>,
    pub min: [f32; 3],
    pub max: [f32; 3],
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.texels.len() / 2
    }

    /// Start (with the colour slot) and end of each segment.
    #[cfg(test)]
    pub fn segments(&self) -> impl Iterator<Item = ([f32; 4], [f32; 3])> + '_ {
        self.texels
            .chunks_exact(2)
            .map(|t| (t[0], [t[1][0], t[1][1], t[1][2]]))
    }

    fn push(&mut self, a: [f32; 3], b: [f32; 3], kind: u8, move_no: u32) {
        if self.texels.is_empty() {
            self.min = a;
            self.max = a;
        }
        for p in [a, b] {
            for ((lo, hi), x) in self.min.iter_mut().zip(&mut self.max).zip(p) {
                *lo = lo.min(x);
                *hi = hi.max(x);
            }
        }
        self.texels.push([a[0], a[1], a[2], f32::from(kind)]);
        self.texels.push([b[0], b[1], b[2], move_no as f32]);
    }
}

/// One level of detail: segments binned into the cells of a grid (see [`Polyline::binned`]),
/// each cell in chunks. `tolerance` is how far (world units) the drawn lines may be from the
/// real path. All levels of one [`Lines`] have the same cells, so the view can choose a level
/// per cell: fine near the eye, coarse far away.
#[derive(Debug, Default)]
pub struct Level {
    pub tolerance: f32,
    pub cells: Vec<Vec<Chunk>>,
}

impl Level {
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.cells.iter().flatten().map(Chunk::len).sum()
    }
}

/// Lines to draw, finest level first.
#[derive(Debug, Default)]
pub struct Lines {
    pub levels: Vec<Level>,
}

/// The cells segments are binned into: a square grid over the toolpath's XY extent, plus one
/// cell for segments that would cross many (long rapids).
#[derive(Clone, Copy, Debug)]
struct Grid {
    lo: [f32; 2],
    hi: [f32; 2],
    n: usize,
}

/// About this many full-detail segments per cell, and at most 16 × 16 cells: culling and
/// choosing levels per cell pays, while draw calls stay a few hundred at most.
const CELL_SEGMENTS: f64 = 8192.0;
const MAX_GRID: usize = 16;

impl Grid {
    fn new(points: &[[f32; 3]]) -> Self {
        let segments = points.len().saturating_sub(1);
        let n = ((segments as f64 / CELL_SEGMENTS).sqrt() as usize).clamp(1, MAX_GRID);
        let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
        for p in points {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        Self { lo, hi, n }
    }

    fn cells(&self) -> usize {
        self.n * self.n + 1
    }

    /// The wide cell's index.
    fn wide(&self) -> usize {
        self.n * self.n
    }

    /// Whether a segment is longer than a cell along X or Y: it goes to the wide cell rather
    /// than into every cell it crosses (and would make those cells' bounds wide).
    fn is_wide(&self, a: [f32; 3], b: [f32; 3]) -> bool {
        (0..2).any(|k| (a[k] - b[k]).abs() * self.n as f32 > self.hi[k] - self.lo[k])
    }

    fn index(&self, x: f32, k: usize) -> usize {
        let span = self.hi[k] - self.lo[k];
        if span > 0.0 {
            (((x - self.lo[k]) / span * self.n as f32).max(0.0) as usize).min(self.n - 1)
        } else {
            0
        }
    }
}

fn f32x3(p: Point3) -> [f32; 3] {
    [p.x as f32, p.y as f32, p.z as f32]
}

/// The mesh's corners as f32, three per triangle (cheap; done on the UI thread).
pub fn model_corners(mesh: &Mesh) -> Vec<[f32; 3]> {
    mesh.triangles()
        .iter()
        .flat_map(|t| t.v.map(f32x3))
        .collect()
}

/// Merges corners at the same position into shared vertices (done off the UI thread).
pub fn model_data(corners: &[[f32; 3]]) -> ModelData {
    let mut index: HashMap<[u32; 3], u32> = HashMap::with_capacity(corners.len() / 4);
    let mut out = ModelData {
        positions: Vec::with_capacity(corners.len() / 4),
        indices: Vec::with_capacity(corners.len()),
    };
    for c in corners {
        // `+ 0.0` turns -0.0 into 0.0, so the two zeros share a vertex.
        let key = c.map(|x| (x + 0.0).to_bits());
        let next = out.positions.len() as u32;
        let i = *index.entry(key).or_insert(next);
        if i == next {
            out.positions.push(Vec3::from(*c));
        }
        out.indices.push(i);
    }
    out
}

/// A coloured triangle mesh (the simulated stock), ready for the GPU.
#[derive(Debug, Default)]
pub struct SurfaceData {
    pub positions: Vec<Vec3>,
    pub colors: Vec<three_d::Srgba>,
    pub indices: Vec<u32>,
}

/// The simulated stock's surface for the GPU.
pub fn surface_data(s: &millpond_core::simulate::StockSurface) -> SurfaceData {
    SurfaceData {
        positions: s.positions.iter().map(|&p| Vec3::from(p)).collect(),
        colors: s
            .colors
            .iter()
            .map(|&[r, g, b]| three_d::Srgba::new(r, g, b, 255))
            .collect(),
        indices: s.indices.clone(),
    }
}

/// A polyline: `kinds[i]` is the colour slot of the segment ending at `points[i]`
/// (`kinds[0]` is unused).
#[derive(Debug, Default)]
pub struct Polyline {
    points: Vec<[f32; 3]>,
    kinds: Vec<u8>,
    /// The toolpath's move (1-based) that ends at `points[i]`; 0 where there is none.
    moves: Vec<u32>,
}

impl Polyline {
    /// One segment per move, from where the tool was to where the move takes it, coloured by
    /// the move's kind; moves of zero length are left out. Also the toolpath's bounds. One
    /// pass, cheap enough for the UI thread.
    pub fn from_toolpath(toolpath: &Toolpath) -> (Self, Aabb) {
        let mut bounds = Aabb::EMPTY;
        let mut line = Polyline::default();
        if toolpath.moves.is_empty() {
            return (line, bounds);
        }
        line.points.reserve(toolpath.moves.len() + 1);
        line.kinds.reserve(toolpath.moves.len() + 1);
        bounds.extend(toolpath.start);
        line.points.push(f32x3(toolpath.start));
        line.kinds.push(KIND_CUT);
        line.moves.push(0);
        for (k, m) in toolpath.moves.iter().enumerate() {
            bounds.extend(m.to);
            let p = f32x3(m.to);
            if line.points.last() == Some(&p) {
                continue;
            }
            line.points.push(p);
            line.moves.push(k as u32 + 1);
            line.kinds.push(match m.kind {
                MoveKind::Rapid => KIND_RAPID,
                MoveKind::Plunge => KIND_PLUNGE,
                MoveKind::Cut => KIND_CUT,
            });
        }
        (line, bounds)
    }

    /// Separate polylines (a job's CL points as its chunks arrive) as one, with undrawn jumps
    /// between the pieces, drawn in the cut colour; also their bounds. Simplification never
    /// merges across a jump (its kind differs), so pieces stay apart at every level.
    pub fn from_pieces<P: AsRef<[Point3]>>(pieces: &[P]) -> (Self, Aabb) {
        let mut bounds = Aabb::EMPTY;
        let mut line = Polyline::default();
        let n: usize = pieces.iter().map(|p| p.as_ref().len()).sum();
        line.points.reserve(n);
        line.kinds.reserve(n);
        for piece in pieces {
            for (i, &p) in piece.as_ref().iter().enumerate() {
                bounds.extend(p);
                line.points.push(f32x3(p));
                line.kinds.push(if i == 0 { KIND_GAP } else { KIND_CUT });
                line.moves.push(0);
            }
        }
        (line, bounds)
    }

    /// Segments drawn at full detail (jumps between pieces are not drawn).
    pub fn segments(&self) -> usize {
        self.kinds
            .iter()
            .skip(1)
            .filter(|&&k| k != KIND_GAP)
            .count()
    }

    /// The levels of detail to upload (done off the UI thread): the full path, then
    /// simplified copies with tolerances growing from a small fraction of `scale` (the
    /// toolpath's diagonal).
    pub fn into_lines(self, scale: f32) -> Lines {
        let grid = Grid::new(&self.points);
        let mut lines = Lines {
            levels: vec![self.binned(0.0, &grid)],
        };
        let mut coarser = self;
        for fraction in LEVEL_TOLERANCES {
            let tolerance = scale * fraction;
            // Also stops on NaN (a toolpath with no extent).
            if tolerance.is_nan() || tolerance <= 0.0 {
                break;
            }
            let next = coarser.simplified(tolerance);
            // A level that saves little is not worth its memory.
            if next.points.len() * 10 > coarser.points.len() * 9 {
                continue;
            }
            lines.levels.push(next.binned(tolerance, &grid));
            coarser = next;
        }
        lines
    }

    /// The segments binned by where they are into the cells of `grid`, each cell in chunks of
    /// at most [`CHUNK_SEGMENTS`]. A segment goes into every cell its XY box touches (at most
    /// four; one longer than a cell goes to the wide cell), so every cell of every level covers all of
    /// the path over its ground and levels can be mixed cell by cell without gaps. Segments
    /// are drawn independently, so their order does not matter; compact cells let a
    /// zoomed-in view skip most of them, where chunks of consecutive raster lines would span
    /// the whole part and always be on screen.
    fn binned(&self, tolerance: f32, grid: &Grid) -> Level {
        let mut cells: Vec<Vec<Chunk>> = (0..grid.cells()).map(|_| Vec::new()).collect();
        let mut put = |cell: usize, a, b, kind, move_no| {
            let chunks = &mut cells[cell];
            if chunks.last().is_none_or(|c| c.len() == CHUNK_SEGMENTS) {
                chunks.push(Chunk::default());
            }
            if let Some(c) = chunks.last_mut() {
                c.push(a, b, kind, move_no);
            }
        };
        for i in 1..self.points.len() {
            let (a, b) = (self.points[i - 1], self.points[i]);
            let kind = self.kinds[i];
            let move_no = self.moves.get(i).copied().unwrap_or(0);
            if kind == KIND_GAP {
                continue;
            }
            if grid.is_wide(a, b) {
                put(grid.wide(), a, b, kind, move_no);
                continue;
            }
            let (x0, x1) = (grid.index(a[0].min(b[0]), 0), grid.index(a[0].max(b[0]), 0));
            let (y0, y1) = (grid.index(a[1].min(b[1]), 1), grid.index(a[1].max(b[1]), 1));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    put(y * grid.n + x, a, b, kind, move_no);
                }
            }
        }
        Level { tolerance, cells }
    }

    /// Drops points while every dropped point stays within `tolerance` of the segment that
    /// replaces it; segments of different kinds are never merged, so colours stay exact.
    /// Greedy and capped at [`MERGE_CAP`] points per segment: linear time on any input.
    fn simplified(&self, tolerance: f32) -> Polyline {
        let (p, k) = (&self.points, &self.kinds);
        let n = p.len();
        let mut out = Polyline::default();
        if n == 0 {
            return out;
        }
        out.points.push(p[0]);
        out.kinds.push(k[0]);
        // A merged segment counts as its last move: it shows once the path reaches its end.
        out.moves.push(self.moves[0]);
        let tol2 = tolerance * tolerance;
        let mut anchor = 0;
        let mut end = 1;
        while end < n {
            let next = end + 1;
            if next < n
                && k[next] == k[end]
                && next - anchor <= MERGE_CAP
                && (anchor + 1..next).all(|m| dist2_to_segment(p[m], p[anchor], p[next]) <= tol2)
            {
                end = next;
                continue;
            }
            out.points.push(p[end]);
            out.kinds.push(k[end]);
            out.moves.push(self.moves[end]);
            anchor = end;
            end = anchor + 1;
        }
        out
    }
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn dist2_to_segment(p: [f32; 3], a: [f32; 3], b: [f32; 3]) -> f32 {
    let ab = sub(b, a);
    let ap = sub(p, a);
    let len2 = dot(ab, ab);
    let t = if len2 > 0.0 {
        (dot(ap, ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let d = [ap[0] - ab[0] * t, ap[1] - ab[1] * t, ap[2] - ab[2] * t];
    dot(d, d)
}

/// The toolpath's levels of detail and bounds, in one go (for tests).
#[cfg(test)]
fn toolpath_lines(toolpath: &Toolpath) -> (Lines, Aabb) {
    let (line, bounds) = Polyline::from_toolpath(toolpath);
    let scale = if bounds.is_empty() {
        0.0
    } else {
        bounds.size().length() as f32
    };
    (line.into_lines(scale), bounds)
}

/// The twelve edges of a box.
/// The work-zero marker: one segment of `length` along +X, +Y and +Z from `at`, as kinds
/// 0, 1 and 2 so that one draw colours them red, green and blue.
pub fn axis_lines(at: Point3, length: f64) -> Lines {
    let mut chunk = Chunk::default();
    let o = f32x3(at);
    for (kind, d) in [
        (0u8, Point3::new(length, 0.0, 0.0)),
        (1, Point3::new(0.0, length, 0.0)),
        (2, Point3::new(0.0, 0.0, length)),
    ] {
        chunk.push(o, f32x3(at + d), kind, 0);
    }
    Lines {
        levels: vec![Level {
            tolerance: 0.0,
            cells: vec![vec![chunk]],
        }],
    }
}

/// The cutter with its tip at `tip`, as a wireframe: its profile in the XZ and YZ planes,
/// circles where the profile reaches full width and at the top of `length`, and four side
/// lines.
pub fn tool_lines(tip: Point3, cutter: &Cutter, length: f64) -> Lines {
    let mut chunk = Chunk::default();
    let r = cutter.radius();
    let at = |x: f64, y: f64, z: f64| f32x3(Point3::new(tip.x + x, tip.y + y, tip.z + z));
    const STEPS: usize = 16;
    // The profile, from the axis out, both ways in both planes.
    for k in 0..STEPS {
        let (r0, r1) = (
            r * k as f64 / STEPS as f64,
            r * (k + 1) as f64 / STEPS as f64,
        );
        let (z0, z1) = (cutter.height_at(r0), cutter.height_at(r1));
        for (dx, dy) in [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)] {
            chunk.push(at(dx * r0, dy * r0, z0), at(dx * r1, dy * r1, z1), 0, 0);
        }
    }
    let shoulder = cutter.height_at(r);
    let top = length.max(shoulder);
    let circle = 48;
    for k in 0..circle {
        let (a0, a1) = (
            std::f64::consts::TAU * k as f64 / circle as f64,
            std::f64::consts::TAU * (k + 1) as f64 / circle as f64,
        );
        for z in [shoulder, top] {
            chunk.push(
                at(r * a0.cos(), r * a0.sin(), z),
                at(r * a1.cos(), r * a1.sin(), z),
                0,
                0,
            );
        }
    }
    for (dx, dy) in [(1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)] {
        chunk.push(at(dx * r, dy * r, shoulder), at(dx * r, dy * r, top), 0, 0);
    }
    Lines {
        levels: vec![Level {
            tolerance: 0.0,
            cells: vec![vec![chunk]],
        }],
    }
}

pub fn box_lines(b: &Aabb) -> Lines {
    let mut chunk = Chunk::default();
    let corner = |i: usize| {
        f32x3(Point3::new(
            if i & 1 == 0 { b.min.x } else { b.max.x },
            if i & 2 == 0 { b.min.y } else { b.max.y },
            if i & 4 == 0 { b.min.z } else { b.max.z },
        ))
    };
    for i in 0..8usize {
        for bit in [1usize, 2, 4] {
            if i & bit == 0 && corner(i) != corner(i | bit) {
                chunk.push(corner(i), corner(i | bit), KIND_EDGE, 0);
            }
        }
    }
    Lines {
        levels: vec![Level {
            tolerance: 0.0,
            cells: vec![vec![chunk]],
        }],
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A box from the origin to `max`, as a mesh (the scenes the view's tests draw).
    pub(in crate::gui::view3d) fn box_mesh(max: Point3) -> Mesh {
        let triangles = millpond_core::models::box_solid(Point3::new(0.0, 0.0, 0.0), max);
        Mesh::from_triangles(triangles, "box").expect("a box is a valid mesh")
    }

    /// The shader draws a toolpath up to a move by the move number each segment carries: at
    /// full detail every segment ends where its move ends; simplified segments carry the
    /// number of the last move they stand for, so nothing shows before its move is reached.
    #[test]
    fn every_segment_carries_the_move_it_ends() {
        let mut tp = Toolpath {
            start: Point3::new(0.0, 0.0, 0.0),
            moves: vec![],
        };
        for k in 0..200 {
            let x = k as f64 * 0.5;
            tp.push(MoveKind::Cut, Point3::new(x, (x * 0.3).sin(), 0.0));
        }
        tp.push(MoveKind::Rapid, Point3::new(99.5, 0.0, 5.0));
        let (lines, _) = toolpath_lines(&tp);
        let ends = |level: &Level| {
            let mut v: Vec<(u32, [f32; 3])> = level
                .cells
                .iter()
                .flatten()
                .flat_map(|c| c.texels.chunks_exact(2))
                .map(|t| (t[1][3] as u32, [t[1][0], t[1][1], t[1][2]]))
                .collect();
            v.sort_by_key(|e| e.0);
            v.dedup_by_key(|e| e.0);
            v
        };
        let full = ends(&lines.levels[0]);
        // The first cut goes nowhere from the start (x = 0): left out.
        assert_eq!(full.len(), tp.moves.len() - 1);
        for (n, end) in &full {
            assert_eq!(*end, f32x3(tp.moves[*n as usize - 1].to), "move {n}");
        }
        assert!(lines.levels.len() > 1, "no simplified level to check");
        for level in &lines.levels[1..] {
            for (n, end) in ends(level) {
                assert_eq!(end, f32x3(tp.moves[n as usize - 1].to), "move {n}");
            }
        }
    }

    #[test]
    fn toolpath_segments_follow_moves_and_kinds() {
        let mut tp = Toolpath {
            start: Point3::new(0.0, 0.0, 10.0),
            moves: vec![],
        };
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 0.0));
        tp.push(MoveKind::Cut, Point3::new(5.0, 0.0, 0.0));
        tp.push(MoveKind::Cut, Point3::new(5.0, 0.0, 0.0)); // zero length: skipped
        tp.push(MoveKind::Rapid, Point3::new(5.0, 0.0, 10.0));
        let (lines, b) = toolpath_lines(&tp);
        assert_eq!(lines.levels.len(), 1, "nothing to simplify");
        let chunks: Vec<&Chunk> = lines.levels[0].cells.iter().flatten().collect();
        assert_eq!(chunks.len(), 1, "few segments make one cell");
        let c = chunks[0];
        assert_eq!(c.len(), 3);
        let segs: Vec<_> = c.segments().collect();
        assert_eq!(
            segs[0],
            ([0.0, 0.0, 10.0, f32::from(KIND_PLUNGE)], [0.0, 0.0, 0.0])
        );
        assert_eq!(segs[1].0[3], f32::from(KIND_CUT));
        assert_eq!(
            segs[2],
            ([5.0, 0.0, 0.0, f32::from(KIND_RAPID)], [5.0, 0.0, 10.0])
        );
        assert_eq!((c.min, c.max), ([0.0, 0.0, 0.0], [5.0, 0.0, 10.0]));
        assert_eq!(
            (b.min, b.max),
            (Point3::new(0.0, 0.0, 0.0), Point3::new(5.0, 0.0, 10.0))
        );
    }

    /// A fine zigzag over a curved surface, ending with a rapid.
    fn zigzag() -> Toolpath {
        let mut tp = Toolpath {
            start: Point3::new(0.0, 0.0, 20.0),
            moves: vec![],
        };
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 0.0));
        let height = |x: f64, y: f64| 10.0 * (x * 0.1).sin() * (y * 0.05).cos();
        for j in 0..100 {
            for i in 0..400 {
                let i = if j % 2 == 0 { i } else { 399 - i };
                let (x, y) = (i as f64 * 0.25, j as f64);
                tp.push(MoveKind::Cut, Point3::new(x, y, height(x, y)));
            }
        }
        tp.push(MoveKind::Rapid, Point3::new(0.0, 99.0, 20.0));
        tp
    }

    /// Each simplified level stays within its tolerance of the full path (tolerances compound
    /// across levels), starts and ends where it does, and keeps the kinds' boundaries.
    #[test]
    fn simplification_stays_within_tolerance() {
        let tp = zigzag();
        let (full, _) = Polyline::from_toolpath(&tp);
        // The first cut is where the plunge ends: a zero-length move, left out.
        assert_eq!(full.segments(), tp.moves.len() - 1);
        let mut allowed = 0.0;
        let mut level = Polyline {
            points: full.points.clone(),
            kinds: full.kinds.clone(),
            moves: full.moves.clone(),
        };
        for tolerance in [0.05f32, 0.2, 0.8] {
            let coarser = level.simplified(tolerance);
            assert!(coarser.points.len() < level.points.len());
            level = coarser;
            allowed += tolerance * 1.001;
            let (p, k) = (&level.points, &level.kinds);
            assert_eq!(p[0], full.points[0]);
            assert_eq!(p.last(), full.points.last());
            assert_eq!(k[1], KIND_PLUNGE);
            assert_eq!(k.last(), Some(&KIND_RAPID));
            assert!(k[2..k.len() - 1].iter().all(|&k| k == KIND_CUT));
            // Simplified points are a subsequence of the original ones: that finds the
            // segment each original point was replaced by.
            let mut i = 0;
            for w in p.windows(2) {
                assert_eq!(full.points[i], w[0], "points come from the path, in order");
                loop {
                    let d = dist2_to_segment(full.points[i], w[0], w[1]).sqrt();
                    assert!(
                        d <= allowed,
                        "{:?} is {d} from level {tolerance}",
                        full.points[i]
                    );
                    if i > 0 && full.points[i] == w[1] {
                        break;
                    }
                    i += 1;
                }
            }
            assert_eq!(i, full.points.len() - 1);
        }
    }

    /// Cells hold the path's segments — each in every cell it touches, or in the wide cell —
    /// within their chunks' bounds, and are compact.
    #[test]
    fn cells_hold_every_segment_where_it_is() {
        let mut tp = zigzag();
        // A long rapid across the whole path goes to the wide cell.
        tp.push(MoveKind::Rapid, Point3::new(99.75, 0.0, 20.0));
        let (full, bounds) = Polyline::from_toolpath(&tp);
        let grid = Grid::new(&full.points);
        assert_eq!(grid.n, 2, "40k segments make a 2 × 2 grid");
        let level = full.binned(0.0, &grid);
        assert_eq!(level.cells.len(), 5);
        let key = |a: &[f32], b: &[f32], k: f32| {
            [a[0], a[1], a[2], b[0], b[1], b[2], k].map(f32::to_bits)
        };
        let mut expected: Vec<_> = (1..full.points.len())
            .map(|i| {
                key(
                    &full.points[i - 1],
                    &full.points[i],
                    f32::from(full.kinds[i]),
                )
            })
            .collect();
        let mut got = Vec::new();
        let extent = bounds.size().x.max(bounds.size().y) as f32;
        for (i, cell) in level.cells.iter().enumerate() {
            for c in cell {
                assert!(c.len() > 0 && c.len() <= CHUNK_SEGMENTS);
                for (s, e) in c.segments() {
                    got.push(key(&s, &e, s[3]));
                    for k in 0..3 {
                        assert!(c.min[k] <= s[k].min(e[k]) && c.max[k] >= s[k].max(e[k]));
                    }
                }
                let width = (c.max[0] - c.min[0]).max(c.max[1] - c.min[1]);
                if i == grid.wide() {
                    assert_eq!(c.len(), 1, "only the long rapid is wide");
                } else {
                    assert!(
                        width <= 0.55 * extent,
                        "cell {i} is {width} wide of {extent}"
                    );
                }
            }
        }
        expected.sort_unstable();
        got.sort_unstable();
        got.dedup();
        assert!(expected == got, "the cells hold the path's segments");
    }

    /// Pieces stay apart: no segment joins the end of one to the start of the next, at any
    /// level of detail.
    #[test]
    fn preview_pieces_are_not_joined() {
        let a: Vec<Point3> = (0..20)
            .map(|i| Point3::new(f64::from(i) * 0.1, 0.0, 0.0))
            .collect();
        let b: Vec<Point3> = (0..20)
            .map(|i| Point3::new(f64::from(i) * 0.1, 5.0, 1.0))
            .collect();
        let (line, bounds) = Polyline::from_pieces(&[a, b]);
        assert_eq!(line.segments(), 38);
        assert_eq!((bounds.min.y, bounds.max.y, bounds.max.z), (0.0, 5.0, 1.0));
        let lines = line.into_lines(bounds.size().length() as f32);
        assert!(lines.levels.len() > 1, "straight pieces simplify");
        for level in &lines.levels {
            for chunk in level.cells.iter().flatten() {
                for (s, e) in chunk.segments() {
                    assert_eq!(s[1], e[1], "a segment jumps between pieces: {s:?} {e:?}");
                    assert_eq!(s[3], f32::from(KIND_CUT));
                }
            }
        }
        assert_eq!(lines.levels[1].segments(), 2, "each piece one segment");
    }

    #[test]
    fn levels_get_coarser() {
        let (lines, _) = toolpath_lines(&zigzag());
        assert!(lines.levels.len() >= 3, "{} levels", lines.levels.len());
        assert_eq!(lines.levels[0].tolerance, 0.0);
        for pair in lines.levels.windows(2) {
            assert!(pair[1].segments() < pair[0].segments());
            assert!(pair[1].tolerance > pair[0].tolerance);
        }
    }

    #[test]
    fn box_has_twelve_axis_aligned_edges() {
        let b = Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(1.0, 2.0, 3.0),
        };
        let lines = box_lines(&b);
        let c = &lines.levels[0].cells[0][0];
        assert_eq!(c.len(), 12);
        for (a, e) in c.segments() {
            let changed = (0..3).filter(|&k| a[k] != e[k]).count();
            assert_eq!(changed, 1);
        }
    }

    #[test]
    fn model_data_shares_corners() {
        let mesh = box_mesh(Point3::new(1.0, 1.0, 1.0));
        let corners = model_corners(&mesh);
        let d = model_data(&corners);
        assert_eq!(d.indices.len(), mesh.len() * 3);
        assert_eq!(d.positions.len(), 8, "a box has eight corners");
        for (c, &i) in corners.iter().zip(&d.indices) {
            assert_eq!(Vec3::from(*c), d.positions[i as usize]);
        }
    }
}
