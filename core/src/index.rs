//! Which triangles can touch a cutter whose axis stands at (x, y)?
//!
//! A bounding-volume hierarchy over the triangles' XY boxes, split at the median of the
//! longer axis so that both halves always shrink: a query costs O(log n + k) whatever the
//! mesh's density. (A kd-tree whose splits only ever prune one side of the query degrades to
//! O(n) per query on fine meshes; ARCHITECTURE.md §1.1.) Nodes are stored depth-first in one array
//! with an escape index, so a query is a single forward scan with no stack and no
//! allocation. Each node also keeps the highest z below it, for queries that only care about
//! triangles above a height.
//!
//! Why not `rstar`: its R*-tree answers the same envelope queries, but through a generic
//! iterator with per-query allocation and 2-D points in f64; this flat f32 layout is 24 bytes
//! a node and keeps the whole index of a 1M-triangle mesh under 20 MB.

use crate::geom::{Rect, Triangle};
use crate::mesh::Mesh;

/// Triangles per leaf. Small leaves keep `k` close to the true overlap count.
const LEAF_SIZE: usize = 4;

#[derive(Clone, Copy, Debug)]
struct Node {
    min: [f32; 2],
    max: [f32; 2],
    /// Highest z of any triangle below this node (rounded up).
    zmax: f32,
    /// Leaf: first slot in `order` (count in `count`). Inner node: unused.
    first: u32,
    /// Index of the next node after this subtree (escape), for the stackless scan.
    escape: u32,
    /// Triangles in a leaf, 0 for an inner node (whose first child is the next node).
    count: u32,
}

/// Spatial index over a mesh's triangles, in XY.
#[derive(Debug, Clone)]
pub struct TriangleIndex {
    nodes: Vec<Node>,
    /// Triangle ids in leaf order.
    order: Vec<u32>,
}

/// f32 bounds that contain the f64 value: exact for coordinates read from STL (which are
/// f32), one ulp outward otherwise. Pruning with them never drops a triangle that touches.
pub(crate) fn down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v { f.next_down() } else { f }
}

pub(crate) fn up(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) < v { f.next_up() } else { f }
}

struct Item {
    min: [f32; 2],
    max: [f32; 2],
    zmax: f32,
    centre: [f32; 2],
    id: u32,
}

impl TriangleIndex {
    pub fn new(mesh: &Mesh) -> Self {
        Self::from_triangles(mesh.triangles())
    }

    pub fn from_triangles(triangles: &[Triangle]) -> Self {
        let mut items: Vec<Item> = triangles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let xmin = t.v[0].x.min(t.v[1].x).min(t.v[2].x);
                let xmax = t.v[0].x.max(t.v[1].x).max(t.v[2].x);
                let ymin = t.v[0].y.min(t.v[1].y).min(t.v[2].y);
                let ymax = t.v[0].y.max(t.v[1].y).max(t.v[2].y);
                let (min, max) = ([down(xmin), down(ymin)], [up(xmax), up(ymax)]);
                Item {
                    min,
                    max,
                    zmax: up(t.zmax()),
                    centre: [(0.5 * (xmin + xmax)) as f32, (0.5 * (ymin + ymax)) as f32],
                    id: i as u32,
                }
            })
            .collect();
        let mut nodes = Vec::with_capacity(2 * triangles.len() / LEAF_SIZE + 1);
        let mut order = Vec::with_capacity(triangles.len());
        build(&mut items, &mut nodes, &mut order);
        Self { nodes, order }
    }

    /// Calls `visit` with the id of every triangle whose XY box may overlap `rect` and whose
    /// highest point is above `zmin`. May report a few triangles that do not overlap (those
    /// sharing a leaf), never misses one that does.
    pub fn query(&self, rect: &Rect, zmin: f64, mut visit: impl FnMut(u32)) {
        let (qx0, qx1, qy0, qy1) = (
            down(rect.xmin),
            up(rect.xmax),
            down(rect.ymin),
            up(rect.ymax),
        );
        let qz = down(zmin);
        let mut i = 0usize;
        while i < self.nodes.len() {
            let n = &self.nodes[i];
            if n.max[0] < qx0 || n.min[0] > qx1 || n.max[1] < qy0 || n.min[1] > qy1 || n.zmax < qz {
                i = n.escape as usize;
                continue;
            }
            if n.count > 0 {
                let first = n.first as usize;
                for &id in &self.order[first..first + n.count as usize] {
                    visit(id);
                }
                i = n.escape as usize;
            } else {
                i += 1;
            }
        }
    }

    /// Bytes held by the index.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>() + self.order.len() * 4
    }
}

fn build(items: &mut [Item], nodes: &mut Vec<Node>, order: &mut Vec<u32>) {
    let mut min = [f32::INFINITY; 2];
    let mut max = [f32::NEG_INFINITY; 2];
    let mut cmin = [f32::INFINITY; 2];
    let mut cmax = [f32::NEG_INFINITY; 2];
    let mut zmax = f32::NEG_INFINITY;
    for it in items.iter() {
        for k in 0..2 {
            min[k] = min[k].min(it.min[k]);
            max[k] = max[k].max(it.max[k]);
            cmin[k] = cmin[k].min(it.centre[k]);
            cmax[k] = cmax[k].max(it.centre[k]);
        }
        zmax = zmax.max(it.zmax);
    }
    let me = nodes.len();
    nodes.push(Node {
        min,
        max,
        zmax,
        first: 0,
        escape: 0,
        count: 0,
    });
    if items.len() <= LEAF_SIZE {
        nodes[me].first = order.len() as u32;
        nodes[me].count = items.len() as u32;
        order.extend(items.iter().map(|it| it.id));
    } else {
        let axis = usize::from(cmax[1] - cmin[1] > cmax[0] - cmin[0]);
        let mid = items.len() / 2;
        // Ties broken by id so that the tree does not depend on the sort's whims.
        items.select_nth_unstable_by(mid, |a, b| {
            a.centre[axis]
                .total_cmp(&b.centre[axis])
                .then(a.id.cmp(&b.id))
        });
        let (left, right) = items.split_at_mut(mid);
        build(left, nodes, order);
        build(right, nodes, order);
    }
    nodes[me].escape = nodes.len() as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;

    #[test]
    fn query_finds_exactly_the_overlapping_boxes_and_maybe_leaf_mates() {
        // A strip of 1000 unit triangles along x.
        let tris: Vec<Triangle> = (0..1000)
            .map(|i| {
                let x = i as f64;
                Triangle::new(
                    Point3::new(x, 0.0, 0.0),
                    Point3::new(x + 1.0, 0.0, 0.0),
                    Point3::new(x, 1.0, 0.0),
                )
            })
            .collect();
        let index = TriangleIndex::from_triangles(&tris);
        let mut hits = Vec::new();
        index.query(&Rect::new(10.5, 12.5, 0.2, 0.3), f64::NEG_INFINITY, |i| {
            hits.push(i)
        });
        for want in [10, 11, 12] {
            assert!(hits.contains(&want), "missing {want} in {hits:?}");
        }
        assert!(hits.len() <= 3 + 2 * LEAF_SIZE, "too many: {hits:?}");
        let mut none = Vec::new();
        index.query(&Rect::new(10.5, 12.5, 0.2, 0.3), 0.5, |i| none.push(i));
        assert!(none.is_empty(), "zmin must prune: {none:?}");
    }
}
