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
use rayon::prelude::*;

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
            .par_iter()
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
        let (nodes, order) = build_tree(&mut items);
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

/// Subtrees with more triangles than this are built on two threads (their halves side by
/// side); smaller ones are not worth a task.
const PARALLEL_ITEMS: usize = 1 << 14;

/// Nodes in the tree over `n` triangles, and over `n + 1`: a leaf up to `LEAF_SIZE`, else a
/// node over two halves of `n / 2` and `n - n / 2`. In O(log n), so that every subtree's
/// place in the node array is known before it is built.
fn node_counts(n: usize) -> (usize, usize) {
    if n < LEAF_SIZE {
        return (1, 1);
    }
    if n == LEAF_SIZE {
        // Over LEAF_SIZE + 1: a node over two leaves.
        return (1, 3);
    }
    let k = n / 2;
    let (a, b) = node_counts(k);
    if n.is_multiple_of(2) {
        (1 + 2 * a, 1 + a + b)
    } else {
        (1 + a + b, 1 + 2 * b)
    }
}

fn node_count(n: usize) -> usize {
    node_counts(n).0
}

/// The tree over `items`, depth-first: each node, then its left subtree, then its right.
fn build_tree(items: &mut [Item]) -> (Vec<Node>, Vec<u32>) {
    let empty = Node {
        min: [0.0; 2],
        max: [0.0; 2],
        zmax: 0.0,
        first: 0,
        escape: 0,
        count: 0,
    };
    let mut nodes = vec![empty; node_count(items.len())];
    let mut order = vec![0u32; items.len()];
    build(items, &mut nodes, 0, &mut order, 0);
    (nodes, order)
}

/// Builds the subtree over `items` into `nodes` (exactly its node count, the first at index
/// `node_base` of the whole array) and `order` (its leaf order, from `order_base`). Large
/// halves are built side by side in their own parts of the arrays: the same nodes, bit for
/// bit, as on one thread, since each half's split depends only on its own items.
fn build(
    items: &mut [Item],
    nodes: &mut [Node],
    node_base: usize,
    order: &mut [u32],
    order_base: usize,
) {
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
    let n = items.len();
    let (me, below) = nodes.split_first_mut().expect("a subtree has a node");
    *me = Node {
        min,
        max,
        zmax,
        first: 0,
        escape: (node_base + 1 + below.len()) as u32,
        count: 0,
    };
    if n <= LEAF_SIZE {
        me.first = order_base as u32;
        me.count = n as u32;
        for (slot, it) in order.iter_mut().zip(items.iter()) {
            *slot = it.id;
        }
        return;
    }
    let axis = usize::from(cmax[1] - cmin[1] > cmax[0] - cmin[0]);
    let mid = n / 2;
    // Ties broken by id so that the tree does not depend on the sort's whims.
    items.select_nth_unstable_by(mid, |a, b| {
        a.centre[axis]
            .total_cmp(&b.centre[axis])
            .then(a.id.cmp(&b.id))
    });
    let (left, right) = items.split_at_mut(mid);
    let (left_nodes, right_nodes) = below.split_at_mut(node_count(mid));
    let (left_order, right_order) = order.split_at_mut(mid);
    let right_base = node_base + 1 + left_nodes.len();
    let mut do_left = || build(left, left_nodes, node_base + 1, left_order, order_base);
    let mut do_right = || {
        build(
            right,
            right_nodes,
            right_base,
            right_order,
            order_base + mid,
        )
    };
    if n > PARALLEL_ITEMS {
        rayon::join(do_left, do_right);
    } else {
        do_left();
        do_right();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::Point3;

    #[test]
    fn the_tree_is_the_same_on_any_number_of_threads() {
        let tris = crate::models::wavy_surface(200);
        assert!(
            tris.len() > 4 * PARALLEL_ITEMS,
            "big enough to build in parallel"
        );
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| TriangleIndex::from_triangles(&tris))
        };
        let (a, b) = (on(1), on(3));
        assert_eq!(a.order, b.order);
        assert_eq!(a.nodes.len(), b.nodes.len());
        for (n, m) in a.nodes.iter().zip(&b.nodes) {
            assert_eq!(
                (n.min, n.max, n.zmax.to_bits(), n.first, n.escape, n.count),
                (m.min, m.max, m.zmax.to_bits(), m.first, m.escape, m.count)
            );
        }
        // Every triangle in exactly one leaf, and escapes past their subtrees.
        let mut seen = a.order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..tris.len() as u32).collect::<Vec<_>>());
        assert!(
            a.nodes
                .iter()
                .enumerate()
                .all(|(i, n)| n.escape as usize > i)
        );
    }

    #[test]
    fn node_counts_are_those_the_tree_has() {
        fn count(n: usize) -> usize {
            if n <= LEAF_SIZE {
                1
            } else {
                1 + count(n / 2) + count(n - n / 2)
            }
        }
        for n in 1..3000 {
            assert_eq!(node_counts(n), (count(n), count(n + 1)), "{n}");
        }
    }

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
