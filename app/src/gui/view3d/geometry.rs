//! CPU-side vertex data: what the view uploads for a model, a stock box and a toolpath. Pure
//! conversions from core types, built on the UI thread and handed to the GL side to upload
//! once.
//!
//! Toolpaths are big (a fine raster has a million points) and software GL pays per segment,
//! visible or not. So a toolpath is uploaded as a few levels of detail — the full path, then
//! simplified copies for when a pixel covers more than the simplification tolerance — and each
//! level in chunks with bounding boxes, so that zoomed in only the chunks on screen are drawn
//! and zoomed out a coarser level is. What is drawn stays within a fraction of a pixel of the
//! real path.

use millpond_core::toolpath::MoveKind;
use millpond_core::{Aabb, Mesh, Point3, Toolpath};
use std::collections::HashMap;
use three_d::Vec3;

/// Colour slots of the line shader (`u_colors[kind]`).
pub const KIND_RAPID: u8 = 0;
pub const KIND_PLUNGE: u8 = 1;
pub const KIND_CUT: u8 = 2;
pub const KIND_EDGE: u8 = 3;

/// Segments per chunk: few enough draw calls for a million segments (about 60), small enough
/// that culling off-screen chunks pays when zoomed in.
pub const CHUNK_SEGMENTS: usize = 16384;

/// Simplified levels, as fractions of the toolpath's diagonal; each is 4× the previous. Level 0
/// (the full path) is always there.
const LEVEL_TOLERANCES: [f32; 3] = [5e-4, 2e-3, 8e-3];

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

/// Line segments drawn as screen-space quads, one instance per segment: `start` carries the
/// colour slot in `w`.
#[derive(Debug, Default)]
pub struct Chunk {
    pub start: Vec<[f32; 4]>,
    pub end: Vec<[f32; 3]>,
    pub min: [f32; 3],
    pub max: [f32; 3],
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.start.len()
    }

    fn push(&mut self, a: [f32; 3], b: [f32; 3], kind: u8) {
        if self.start.is_empty() {
            self.min = a;
            self.max = a;
        }
        for p in [a, b] {
            for ((lo, hi), x) in self.min.iter_mut().zip(&mut self.max).zip(p) {
                *lo = lo.min(x);
                *hi = hi.max(x);
            }
        }
        self.start.push([a[0], a[1], a[2], f32::from(kind)]);
        self.end.push(b);
    }
}

/// One level of detail: segments in chunks. `tolerance` is how far (world units) the drawn
/// lines may be from the real path.
#[derive(Debug, Default)]
pub struct Level {
    pub tolerance: f32,
    pub chunks: Vec<Chunk>,
}

impl Level {
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.chunks.iter().map(Chunk::len).sum()
    }
}

/// Lines to draw, finest level first.
#[derive(Debug, Default)]
pub struct Lines {
    pub levels: Vec<Level>,
}

impl Lines {
    /// Segments in the full-detail level.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.levels.first().map_or(0, Level::segments)
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

/// A polyline: `kinds[i]` is the colour slot of the segment ending at `points[i]`
/// (`kinds[0]` is unused).
#[derive(Debug, Default)]
pub struct Polyline {
    points: Vec<[f32; 3]>,
    kinds: Vec<u8>,
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
        for m in &toolpath.moves {
            bounds.extend(m.to);
            let p = f32x3(m.to);
            if line.points.last() == Some(&p) {
                continue;
            }
            line.points.push(p);
            line.kinds.push(match m.kind {
                MoveKind::Rapid => KIND_RAPID,
                MoveKind::Plunge => KIND_PLUNGE,
                MoveKind::Cut => KIND_CUT,
            });
        }
        (line, bounds)
    }

    pub fn segments(&self) -> usize {
        self.points.len().saturating_sub(1)
    }

    /// The levels of detail to upload (done off the UI thread): the full path, then
    /// simplified copies with tolerances growing from a small fraction of `scale` (the
    /// toolpath's diagonal).
    pub fn into_lines(self, scale: f32) -> Lines {
        let mut lines = Lines {
            levels: vec![self.chunked(0.0)],
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
            lines.levels.push(next.chunked(tolerance));
            coarser = next;
        }
        lines
    }

    fn chunked(&self, tolerance: f32) -> Level {
        let mut level = Level {
            tolerance,
            chunks: Vec::new(),
        };
        let mut chunk = Chunk::default();
        for i in 1..self.points.len() {
            if chunk.len() == CHUNK_SEGMENTS {
                level.chunks.push(std::mem::take(&mut chunk));
            }
            chunk.push(self.points[i - 1], self.points[i], self.kinds[i]);
        }
        if chunk.len() > 0 {
            level.chunks.push(chunk);
        }
        level
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
                chunk.push(corner(i), corner(i | bit), KIND_EDGE);
            }
        }
    }
    Lines {
        levels: vec![Level {
            tolerance: 0.0,
            chunks: vec![chunk],
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = &lines.levels[0].chunks[0];
        assert_eq!(c.len(), 3);
        assert_eq!(c.start[0], [0.0, 0.0, 10.0, f32::from(KIND_PLUNGE)]);
        assert_eq!(c.end[0], [0.0, 0.0, 0.0]);
        assert_eq!(c.start[1][3], f32::from(KIND_CUT));
        assert_eq!(c.start[2], [5.0, 0.0, 0.0, f32::from(KIND_RAPID)]);
        assert_eq!(c.end[2], [5.0, 0.0, 10.0]);
        assert_eq!((c.min, c.max), ([0.0, 0.0, 0.0], [5.0, 0.0, 10.0]));
        assert_eq!(
            (b.min, b.max),
            (Point3::new(0.0, 0.0, 0.0), Point3::new(5.0, 0.0, 10.0))
        );
    }

    /// A fine zigzag over a curved surface: levels get coarser, every level stays within its
    /// tolerance of the full path, keeps the kinds' boundaries and the chunks cover it all.
    #[test]
    fn levels_simplify_within_tolerance() {
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
        let (lines, _) = toolpath_lines(&tp);
        assert!(lines.levels.len() >= 3, "{} levels", lines.levels.len());
        // The first cut is where the plunge ends: a zero-length move, left out.
        assert_eq!(lines.segments(), tp.moves.len() - 1);
        assert!(lines.levels[0].chunks.len() > 1, "40k segments span chunks");
        let mut full: Vec<[f32; 3]> = std::iter::once(f32x3(tp.start))
            .chain(tp.moves.iter().map(|m| f32x3(m.to)))
            .collect();
        full.dedup();
        for pair in lines.levels.windows(2) {
            assert!(pair[1].segments() < pair[0].segments());
            assert!(pair[1].tolerance > pair[0].tolerance);
        }
        for level in &lines.levels[1..] {
            let segs: Vec<([f32; 3], [f32; 3], f32)> = level
                .chunks
                .iter()
                .flat_map(|c| {
                    c.start
                        .iter()
                        .zip(&c.end)
                        .map(|(s, e)| ([s[0], s[1], s[2]], *e, s[3]))
                })
                .collect();
            // Consecutive and starting/ending where the path does.
            assert_eq!(segs[0].0, full[0]);
            assert_eq!(segs.last().map(|s| s.1), full.last().copied());
            assert!(segs.windows(2).all(|w| w[0].1 == w[1].0));
            // Kinds: one plunge first, one rapid last, cuts between.
            assert_eq!(segs[0].2, f32::from(KIND_PLUNGE));
            assert_eq!(segs.last().map(|s| s.2), Some(f32::from(KIND_RAPID)));
            // Every original point lies within the tolerance of the simplified segment that
            // replaced it (tolerances compound across levels: allow their sum). Simplified
            // points are a subsequence of the original ones, which finds that segment.
            let allowed: f32 = lines
                .levels
                .iter()
                .take_while(|l| l.tolerance <= level.tolerance)
                .map(|l| l.tolerance)
                .sum::<f32>()
                * 1.001;
            let mut i = 0;
            for (a, b, _) in &segs {
                assert_eq!(
                    full[i], *a,
                    "simplified points come from the path, in order"
                );
                loop {
                    let d = dist2_to_segment(full[i], *a, *b).sqrt();
                    assert!(
                        d <= allowed,
                        "{:?} is {d} from level {}",
                        full[i],
                        level.tolerance
                    );
                    if full[i] == *b && i > 0 {
                        break;
                    }
                    i += 1;
                }
            }
            assert_eq!(
                i,
                full.len() - 1,
                "the simplified path ends where the path does"
            );
            for c in &level.chunks {
                for (s, e) in c.start.iter().zip(&c.end) {
                    for k in 0..3 {
                        assert!(c.min[k] <= s[k].min(e[k]) && c.max[k] >= s[k].max(e[k]));
                    }
                }
            }
        }
    }

    #[test]
    fn box_has_twelve_axis_aligned_edges() {
        let b = Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(1.0, 2.0, 3.0),
        };
        let lines = box_lines(&b);
        let c = &lines.levels[0].chunks[0];
        assert_eq!(c.len(), 12);
        for (a, e) in c.start.iter().zip(&c.end) {
            let changed = (0..3).filter(|&k| a[k] != e[k]).count();
            assert_eq!(changed, 1);
        }
    }

    #[test]
    fn model_data_shares_corners() {
        let mesh = Mesh::from_triangles(
            millpond_core::models::box_solid(
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 1.0, 1.0),
            ),
            "box",
        )
        .expect("a box is a valid mesh");
        let corners = model_corners(&mesh);
        let d = model_data(&corners);
        assert_eq!(d.indices.len(), mesh.len() * 3);
        assert_eq!(d.positions.len(), 8, "a box has eight corners");
        for (c, &i) in corners.iter().zip(&d.indices) {
            assert_eq!(Vec3::from(*c), d.positions[i as usize]);
        }
    }
}
