//! A validated triangle mesh: what every strategy runs against.

use crate::geom::{Aabb, Point3, Triangle};
use crate::stl::{self, StlEncoding, StlError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

/// BLAKE3 hash of a mesh's canonical bytes (every vertex as f64 little-endian, in triangle
/// order). Pool peers address meshes by it, and a job names the mesh it was planned for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MeshHash(pub [u8; 32]);

impl fmt::Debug for MeshHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeshHash({self})")
    }
}

impl fmt::Display for MeshHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Bytes of one triangle in `Mesh::canonical_bytes`: nine f64.
pub const CANONICAL_TRIANGLE_BYTES: usize = 72;

/// One triangle's canonical bytes: every vertex as f64 little-endian.
fn canonical_triangle(t: &Triangle) -> [u8; CANONICAL_TRIANGLE_BYTES] {
    let mut buf = [0u8; CANONICAL_TRIANGLE_BYTES];
    for (k, p) in t.v.iter().enumerate() {
        for (j, c) in [p.x, p.y, p.z].iter().enumerate() {
            let o = 24 * k + 8 * j;
            buf[o..o + 8].copy_from_slice(&c.to_le_bytes());
        }
    }
    buf
}

/// Triangles with no degenerate ones, finite coordinates, and at least one triangle.
#[derive(Debug, Clone)]
pub struct Mesh {
    triangles: Vec<Triangle>,
    bounds: Aabb,
    skipped_degenerate: usize,
    name: String,
    encoding: Option<StlEncoding>,
    hash: OnceLock<MeshHash>,
}

impl Mesh {
    /// Builds a mesh from triangles, dropping degenerate ones. `name` labels errors.
    pub fn from_triangles(triangles: Vec<Triangle>, name: &str) -> Result<Self, StlError> {
        Self::build(triangles, name, None)
    }

    /// Reads an STL file (binary or ASCII).
    pub fn from_stl_path(path: impl AsRef<Path>) -> Result<Self, StlError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|error| StlError::Io {
            file: name.clone(),
            error,
        })?;
        Self::from_stl_bytes(&bytes, &name)
    }

    /// Parses STL bytes; `name` labels errors (a file name, usually).
    pub fn from_stl_bytes(bytes: &[u8], name: &str) -> Result<Self, StlError> {
        let raw = stl::parse(bytes, name)?;
        Self::build(raw.triangles, name, Some(raw.encoding))
    }

    fn build(
        mut triangles: Vec<Triangle>,
        name: &str,
        encoding: Option<StlEncoding>,
    ) -> Result<Self, StlError> {
        // One pass on all cores (a 1M-triangle mesh in a few milliseconds): the first
        // non-finite triangle, whether any is degenerate, and the bounds; the same results
        // on any number of threads (a first index and a min/max do not depend on the split).
        #[derive(Clone, Copy)]
        struct Scan {
            non_finite: Option<usize>,
            degenerate: bool,
            bounds: Aabb,
        }
        let union = |a: Aabb, b: Aabb| Aabb {
            min: Point3::new(
                a.min.x.min(b.min.x),
                a.min.y.min(b.min.y),
                a.min.z.min(b.min.z),
            ),
            max: Point3::new(
                a.max.x.max(b.max.x),
                a.max.y.max(b.max.y),
                a.max.z.max(b.max.z),
            ),
        };
        let empty = || Scan {
            non_finite: None,
            degenerate: false,
            bounds: Aabb::EMPTY,
        };
        let scan = triangles
            .par_iter()
            .enumerate()
            .fold(empty, |mut s, (i, t)| {
                if !t.v.iter().all(|p| p.is_finite()) {
                    s.non_finite = Some(s.non_finite.map_or(i, |j| j.min(i)));
                } else if t.is_degenerate() {
                    s.degenerate = true;
                } else {
                    for p in t.v {
                        s.bounds.extend(p);
                    }
                }
                s
            })
            .reduce(empty, |a, b| Scan {
                non_finite: match (a.non_finite, b.non_finite) {
                    (Some(i), Some(j)) => Some(i.min(j)),
                    (i, j) => i.or(j),
                },
                degenerate: a.degenerate || b.degenerate,
                bounds: union(a.bounds, b.bounds),
            });
        if let Some(i) = scan.non_finite {
            return Err(StlError::NonFinite {
                file: name.into(),
                triangle: i,
            });
        }
        let before = triangles.len();
        if scan.degenerate {
            triangles = triangles
                .into_par_iter()
                .filter(|t| !t.is_degenerate())
                .collect();
        }
        let skipped_degenerate = before - triangles.len();
        if triangles.is_empty() {
            return Err(StlError::NoTriangles {
                file: name.into(),
                skipped_degenerate,
            });
        }
        let bounds = scan.bounds;
        Ok(Self {
            triangles,
            bounds,
            skipped_degenerate,
            name: name.into(),
            encoding,
            hash: OnceLock::new(),
        })
    }

    pub fn triangles(&self) -> &[Triangle] {
        &self.triangles
    }

    pub fn len(&self) -> usize {
        self.triangles.len()
    }

    /// Never true: a mesh has at least one triangle. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.triangles.is_empty()
    }

    pub fn bounds(&self) -> Aabb {
        self.bounds
    }

    /// How many degenerate (zero-area) triangles loading dropped.
    pub fn skipped_degenerate(&self) -> usize {
        self.skipped_degenerate
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the user should know about how the file was read (`None`: nothing unusual).
    pub fn load_note(&self) -> Option<String> {
        (self.encoding == Some(StlEncoding::AsciiDecimalCommas)).then(|| {
            "its numbers are written with decimal commas (1,5 for 1.5), a locale slip of \
             the program that exported it: read as decimal points"
                .to_string()
        })
    }

    /// The STL encoding this mesh was read from, if it came from a file.
    pub fn encoding(&self) -> Option<StlEncoding> {
        self.encoding
    }

    /// The canonical bytes that `hash` covers and that the pool ships.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.triangles.len() * CANONICAL_TRIANGLE_BYTES);
        for t in &self.triangles {
            out.extend_from_slice(&canonical_triangle(t));
        }
        out
    }

    /// Rebuilds a mesh from `canonical_bytes` (as the pool ships it). Every value is checked
    /// as when loading an STL: the length must be whole triangles, every number finite.
    pub fn from_canonical_bytes(bytes: &[u8], name: &str) -> Result<Self, StlError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(CANONICAL_TRIANGLE_BYTES) {
            return Err(StlError::Truncated {
                file: name.into(),
                reason: format!(
                    "{} bytes is not a whole number of {CANONICAL_TRIANGLE_BYTES}-byte triangles",
                    bytes.len()
                ),
            });
        }
        let tris = bytes
            .chunks_exact(CANONICAL_TRIANGLE_BYTES)
            .map(|t| {
                let f = |k: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&t[8 * k..8 * k + 8]);
                    f64::from_le_bytes(b)
                };
                let p = |k: usize| Point3::new(f(3 * k), f(3 * k + 1), f(3 * k + 2));
                Triangle::new(p(0), p(1), p(2))
            })
            .collect();
        Self::build(tris, name, None)
    }

    /// Content hash, computed on first use.
    pub fn hash(&self) -> MeshHash {
        *self.hash.get_or_init(|| {
            // The bytes go to the hasher 1,024 triangles at a time: BLAKE3 hashes whole
            // 1 KiB chunks side by side in vector lanes, which 72-byte updates never let it
            // do (0.086 s for 1M triangles that way, a third of loading).
            const BATCH: usize = 1024;
            let mut h = blake3::Hasher::new();
            let mut buf = vec![0u8; BATCH * CANONICAL_TRIANGLE_BYTES];
            for batch in self.triangles.chunks(BATCH) {
                for (t, out) in batch
                    .iter()
                    .zip(buf.chunks_exact_mut(CANONICAL_TRIANGLE_BYTES))
                {
                    out.copy_from_slice(&canonical_triangle(t));
                }
                h.update(&buf[..batch.len() * CANONICAL_TRIANGLE_BYTES]);
            }
            MeshHash(*h.finalize().as_bytes())
        })
    }

    /// A copy with every vertex mapped through `f` (scale, move, rotate, mirror).
    /// A mirror reverses vertex order so that normals keep pointing out.
    pub fn transformed(
        &self,
        f: impl Fn(Point3) -> Point3,
        mirrors: bool,
    ) -> Result<Self, StlError> {
        let tris = self
            .triangles
            .iter()
            .map(|t| {
                let [a, b, c] = t.v.map(&f);
                if mirrors {
                    Triangle::new(a, c, b)
                } else {
                    Triangle::new(a, b, c)
                }
            })
            .collect();
        Self::build(tris, &self.name, self.encoding)
    }
}
