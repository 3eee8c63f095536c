//! CPU-side vertex data: what the view uploads for a model, a stock box and a toolpath. Pure
//! conversions from core types, built on the UI thread and handed to the GL side to upload
//! once.

use millpond_core::toolpath::MoveKind;
use millpond_core::{Aabb, Mesh, Point3, Toolpath};
use three_d::{Vec3, vec3};

/// Colour slots of the line shader (`u_colors[kind]`).
pub const KIND_RAPID: f32 = 0.0;
pub const KIND_PLUNGE: f32 = 1.0;
pub const KIND_CUT: f32 = 2.0;
pub const KIND_EDGE: f32 = 3.0;

/// A model as flat-shaded triangles: three vertices per facet sharing the facet normal, so
/// edges between facets stay crisp (a machined part has edges; smoothing would hide them).
#[derive(Debug, Default)]
pub struct ModelData {
    pub positions: Vec<Vec3>,
    pub normals: Vec<Vec3>,
}

/// Line segments drawn as screen-space quads, one instance per segment: `start` carries the
/// move kind in `w`. Zero-length segments are left out.
#[derive(Debug, Default)]
pub struct Segments {
    pub start: Vec<[f32; 4]>,
    pub end: Vec<[f32; 3]>,
}

impl Segments {
    pub fn len(&self) -> usize {
        self.start.len()
    }

    fn push(&mut self, a: Point3, b: Point3, kind: f32) {
        let (a, b) = (f32x3(a), f32x3(b));
        if a != b {
            self.start.push([a[0], a[1], a[2], kind]);
            self.end.push(b);
        }
    }
}

fn f32x3(p: Point3) -> [f32; 3] {
    [p.x as f32, p.y as f32, p.z as f32]
}

pub fn model_data(mesh: &Mesh) -> ModelData {
    let n = mesh.len() * 3;
    let mut out = ModelData {
        positions: Vec::with_capacity(n),
        normals: Vec::with_capacity(n),
    };
    for t in mesh.triangles() {
        // The mesh holds no degenerate triangles; +Z is a harmless fallback all the same.
        let normal = t.normal().unwrap_or(Point3::new(0.0, 0.0, 1.0));
        let normal = vec3(normal.x as f32, normal.y as f32, normal.z as f32);
        for v in t.v {
            out.positions.push(vec3(v.x as f32, v.y as f32, v.z as f32));
            out.normals.push(normal);
        }
    }
    out
}

/// One segment per move, from where the tool was to where the move takes it, coloured by the
/// move's kind.
pub fn toolpath_segments(toolpath: &Toolpath) -> (Segments, Aabb) {
    let mut out = Segments {
        start: Vec::with_capacity(toolpath.moves.len()),
        end: Vec::with_capacity(toolpath.moves.len()),
    };
    let mut bounds = Aabb::EMPTY;
    let mut at = toolpath.start;
    if !toolpath.moves.is_empty() {
        bounds.extend(at);
    }
    for m in &toolpath.moves {
        let kind = match m.kind {
            MoveKind::Rapid => KIND_RAPID,
            MoveKind::Plunge => KIND_PLUNGE,
            MoveKind::Cut => KIND_CUT,
        };
        out.push(at, m.to, kind);
        bounds.extend(m.to);
        at = m.to;
    }
    (out, bounds)
}

/// The twelve edges of a box.
pub fn box_edges(b: &Aabb) -> Segments {
    let mut out = Segments::default();
    let corner = |i: usize| {
        Point3::new(
            if i & 1 == 0 { b.min.x } else { b.max.x },
            if i & 2 == 0 { b.min.y } else { b.max.y },
            if i & 4 == 0 { b.min.z } else { b.max.z },
        )
    };
    for i in 0..8usize {
        for bit in [1usize, 2, 4] {
            if i & bit == 0 {
                out.push(corner(i), corner(i | bit), KIND_EDGE);
            }
        }
    }
    out
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
        let (s, b) = toolpath_segments(&tp);
        assert_eq!(s.len(), 3);
        assert_eq!(s.start[0], [0.0, 0.0, 10.0, KIND_PLUNGE]);
        assert_eq!(s.end[0], [0.0, 0.0, 0.0]);
        assert_eq!(s.start[1][3], KIND_CUT);
        assert_eq!(s.start[2], [5.0, 0.0, 0.0, KIND_RAPID]);
        assert_eq!(s.end[2], [5.0, 0.0, 10.0]);
        assert_eq!(
            (b.min, b.max),
            (Point3::new(0.0, 0.0, 0.0), Point3::new(5.0, 0.0, 10.0))
        );
    }

    #[test]
    fn box_has_twelve_axis_aligned_edges() {
        let b = Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(1.0, 2.0, 3.0),
        };
        let s = box_edges(&b);
        assert_eq!(s.len(), 12);
        for (a, e) in s.start.iter().zip(&s.end) {
            let changed = (0..3).filter(|&k| a[k] != e[k]).count();
            assert_eq!(changed, 1);
        }
    }

    #[test]
    fn model_data_is_flat_shaded() {
        let mesh = Mesh::from_triangles(
            millpond_core::models::box_solid(
                Point3::new(0.0, 0.0, 0.0),
                Point3::new(1.0, 1.0, 1.0),
            ),
            "box",
        )
        .expect("a box is a valid mesh");
        let d = model_data(&mesh);
        assert_eq!(d.positions.len(), mesh.len() * 3);
        for tri in d.normals.chunks(3) {
            assert!(tri[0] == tri[1] && tri[1] == tri[2]);
        }
    }
}
