//! Rest roughing: what a roughing operation still has to cut after the operations before it.
//!
//! A big tool clears most of the stock fast but cannot reach into corners narrower than
//! itself, and a coarse stepdown leaves terraces on slopes. A smaller tool set to "rest"
//! clears only that: the stock as simulated after the earlier operations
//! ([`simulate`](crate::simulate)) is compared cell by cell with the model, and each layer
//! of the rest operation cuts only where material stands more than a threshold above both
//! the layer and the model plus the allowance. Everywhere else the big tool has already left
//! air or finished stock, and the small tool does not go there (the cut length in air is
//! what `millpond simulate` reports as `air_cut_mm`).
//!
//! The layers' material is traced as outlines on the simulated cells here, once, on the
//! computer that runs the job; the pool's chunks (the layers' contours) do not depend on it,
//! so it never crosses the wire: the job's owner applies it when it assembles the toolpath
//! ([`crate::rough::toolpath`]).

use crate::index::TriangleIndex;
use crate::job::{CancelToken, Operation};
use crate::mesh::Mesh;
use crate::setup::Setup;
use crate::simulate::{self, SimulateError, Target, for_each_against};
use crate::stock_model::StockModel;
use crate::{Cutter, JobSpec, Toolpath};
use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::overlay_rule::OverlayRule;
use i_overlay::float::simplify::SimplifyShape;
use i_overlay::float::single::SingleFloatOverlay;
use i_overlay::mesh::float::outline::offset::OutlineOffset;
use i_overlay::mesh::float::style::{LineJoin, OutlineStyle};
use rayon::prelude::*;
use std::collections::HashMap;

type Ring = Vec<[f64; 2]>;
type Shapes = Vec<Vec<Ring>>;

/// Most cells the stock is simulated on to find a rest roughing operation's material
/// (32 MiB of heights; a 200 × 170 mm stock at 0.065 mm).
pub const REST_CELLS: usize = 1 << 23;

/// Where a rest roughing operation's layers still have material to cut.
#[derive(Clone, Debug, PartialEq)]
pub struct RestMaterial {
    /// The simulated stock's cell size, mm: how finely the outlines follow the material.
    pub cell: f64,
    /// Material this close to the layer or to the model plus allowance is left, mm.
    pub threshold: f64,
    /// For each layer of the operation, top down: closed outlines of the cells with material
    /// to cut (outer outlines counter-clockwise, holes clockwise).
    pub layers: Vec<Vec<Ring>>,
}

impl RestMaterial {
    /// What the operations `earlier` (each tool with its toolpath, in machining order) leave
    /// for the job `op` in `setup`, where it is rest roughing (`None` otherwise): the
    /// toolpaths machined into the stock on cells a tenth of `op`'s tool radius (coarser only
    /// where that would take more than [`REST_CELLS`]), then traced at its levels. On the
    /// current rayon pool; stops when `cancel` is set.
    pub fn left_by(
        setup: &Setup,
        earlier: &[(Cutter, &Toolpath)],
        op: &JobSpec,
        mesh: &Mesh,
        index: &TriangleIndex,
        cancel: &CancelToken,
    ) -> Result<Option<Self>, SimulateError> {
        let Operation::Rough(r) = &op.operation else {
            return Ok(None);
        };
        let Some(threshold) = r.rest else {
            return Ok(None);
        };
        let cell = StockModel::cell_for(
            setup.stock,
            op.cutter.radius(),
            simulate::DEFAULT_CELL_FRACTION,
            REST_CELLS,
        );
        let mut stock = StockModel::with_budget(setup.stock, cell, REST_CELLS * 4)
            .map_err(|e| SimulateError::Input(format!("rest roughing: {e}")))?;
        for (cutter, toolpath) in earlier {
            let moves = 0..toolpath.moves.len();
            simulate::machine_moves(
                &mut stock,
                cutter,
                toolpath,
                moves,
                cancel,
                &mut |_, _, _| {},
            )?;
        }
        let target = Target {
            mesh,
            index,
            floor: setup.floor,
        };
        Ok(Some(Self::trace(
            &stock,
            &target,
            &r.contours.levels,
            r.contours.allowance,
            threshold,
        )))
    }

    /// Traces the material `stock` (as the earlier operations left it) still has above the
    /// levels `levels` (top down), where it stands more than `threshold` above the level and
    /// more than `allowance + threshold` above `target` (the model, or the floor off it).
    /// The cells are compared on all threads; each layer is traced on its own, so the
    /// outlines do not depend on the thread count.
    pub fn trace(
        stock: &StockModel,
        target: &Target<'_>,
        levels: &[f64],
        allowance: f64,
        threshold: f64,
    ) -> Self {
        let cell = stock.cell();
        let (nx, ny) = stock.size();
        // Each cell's top where it stands more than `allowance + threshold` above the target
        // (-inf where it does not: no level finds material there), in one pass over the tiles.
        let tiles = stock.fold_tiles(|cells| {
            let mut out = Vec::new();
            for_each_against(&cells, target, cell, |_, _, z, _, aim| {
                let left = z - aim > allowance + threshold;
                out.push(if left { z } else { f64::NEG_INFINITY })
            });
            (cells.extent(), out)
        });
        let mut top = vec![f64::NEG_INFINITY; nx * ny];
        for (((i0, j0), (w, _)), cells) in tiles {
            for (k, z) in cells.into_iter().enumerate() {
                top[(j0 + k / w) * nx + i0 + k % w] = z;
            }
        }
        let origin = stock.centre(0, 0);
        let layers = levels
            .par_iter()
            .map(|&z| {
                let mask: Vec<bool> = top.iter().map(|&h| h > z + threshold).collect();
                outlines(&mask, (nx, ny), origin, cell)
            })
            .collect();
        Self {
            cell,
            threshold,
            layers,
        }
    }

    /// The part of `area` (a layer's clear area, where the tool axis may go) from which a
    /// tool of radius `radius` reaches the material of layer `layer`: the material grown by
    /// the radius less one cell, so that the outermost pass still reaches half a cell into
    /// the nearest material cells rather than skimming past them in air.
    pub(crate) fn restrict(&self, area: &Shapes, layer: usize, radius: f64) -> Shapes {
        let rings = match self.layers.get(layer) {
            Some(r) if !r.is_empty() && !area.is_empty() => r,
            _ => return Vec::new(),
        };
        let material: Shapes = rings.simplify_shape(FillRule::NonZero);
        let grow = radius - self.cell;
        let reach = if grow > 0.0 {
            let style = OutlineStyle::new(grow).line_join(LineJoin::Round(0.1));
            material.outline(&style)
        } else {
            material
        };
        // The grown outlines only say how far the passes go; a quarter cell of leeway is
        // below what the cells can tell, and thinning to it keeps the passes' vertices few.
        let reach =
            crate::rough::each_ring(reach, |ring| crate::rough::thinned(ring, self.cell / 4.0));
        if reach.is_empty() {
            return Vec::new();
        }
        reach.overlay(area, OverlayRule::Intersect, FillRule::NonZero)
    }
}

/// The outlines of the cells set in `mask` (`nx` × `ny`, row by row, cell `(0, 0)` centred
/// at `origin`), each cell a square `cell` wide: counter-clockwise around material,
/// clockwise around holes, where diagonal neighbours meet at a corner kept apart. The
/// staircase is thinned to within a quarter cell: the outlines are grown by nearly the tool
/// radius next, and a quarter cell is below what the cells can tell.
fn outlines(mask: &[bool], (nx, ny): (usize, usize), origin: (f64, f64), cell: f64) -> Vec<Ring> {
    let set = |i: isize, j: isize| {
        i >= 0
            && j >= 0
            && (i as usize) < nx
            && (j as usize) < ny
            && mask[j as usize * nx + i as usize]
    };
    // Directed boundary edges between cell corners (corner (i, j) is cell (i, j)'s lower
    // left), material on the left; a corner starts at most two.
    let key = |i: isize, j: isize| ((i as u64) << 32) | j as u32 as u64;
    let mut out: HashMap<u64, [Option<(isize, isize)>; 2]> = HashMap::new();
    let mut add = |from: (isize, isize), to: (isize, isize)| {
        let slot = out.entry(key(from.0, from.1)).or_insert([None, None]);
        if slot[0].is_none() {
            slot[0] = Some(to);
        } else {
            slot[1] = Some(to);
        }
    };
    let mut starts = Vec::new();
    for j in 0..ny as isize {
        for i in 0..nx as isize {
            if !set(i, j) {
                continue;
            }
            if !set(i, j - 1) {
                add((i, j), (i + 1, j));
                starts.push((i, j));
            }
            if !set(i + 1, j) {
                add((i + 1, j), (i + 1, j + 1));
            }
            if !set(i, j + 1) {
                add((i + 1, j + 1), (i, j + 1));
            }
            if !set(i - 1, j) {
                add((i, j + 1), (i, j));
            }
        }
    }
    let mut rings = Vec::new();
    // Every ring has a bottom edge (its lowest row's); start from each one not yet walked.
    // (A corner where two outlines touch starts two walks.)
    for start in starts {
        while let Some(first) = take(&mut out, key(start.0, start.1), None, start) {
            let mut ring = vec![start];
            let (mut prev, mut here) = (start, first);
            while here != start {
                ring.push(here);
                let dir = (here.0 - prev.0, here.1 - prev.1);
                let Some(next) = take(&mut out, key(here.0, here.1), Some(dir), here) else {
                    break;
                };
                prev = here;
                here = next;
            }
            let corners: Ring = corners_of(&ring)
                .into_iter()
                .map(|(i, j)| {
                    [
                        origin.0 + (i as f64 - 0.5) * cell,
                        origin.1 + (j as f64 - 0.5) * cell,
                    ]
                })
                .collect();
            if corners.len() >= 4 {
                rings.push(crate::rough::thinned(&corners, cell / 4.0));
            }
        }
    }
    debug_assert!(out.values().all(|s| s[0].is_none() && s[1].is_none()));
    rings
}

/// Removes and returns an edge leaving corner `k`: the one turning left from `dir` (the
/// direction the walk arrived in) where two leave it, so that cells touching only at a
/// corner get outlines of their own.
fn take(
    out: &mut HashMap<u64, [Option<(isize, isize)>; 2]>,
    k: u64,
    dir: Option<(isize, isize)>,
    here: (isize, isize),
) -> Option<(isize, isize)> {
    let slot = out.get_mut(&k)?;
    let pick = match (slot[0], slot[1], dir) {
        (Some(a), Some(_), Some((dx, dy))) => {
            let left = (here.0 - dy, here.1 + dx);
            usize::from(a != left)
        }
        (Some(_), _, _) => 0,
        (None, Some(_), _) => 1,
        (None, None, _) => return None,
    };
    slot[pick].take()
}

/// The corners of a staircase walk where it turns (straight runs as one edge).
fn corners_of(walk: &[(isize, isize)]) -> Vec<(isize, isize)> {
    let n = walk.len();
    (0..n)
        .filter(|&k| {
            let (p, q, r) = (walk[(k + n - 1) % n], walk[k], walk[(k + 1) % n]);
            (q.0 - p.0, q.1 - p.1) != (r.0 - q.0, r.1 - q.1)
        })
        .map(|k| walk[k])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geom::{Aabb, Point3};
    use crate::setup::{RoughingParams, Stock, Strategy};
    use crate::{JobContext, models};
    use std::sync::Arc;

    /// A 10 × 10 mm stock 5 mm tall with a 4 × 4 × 3 mm block in its middle.
    fn block() -> (Arc<Mesh>, Arc<TriangleIndex>, Setup) {
        let p = Point3::new;
        let tris = models::box_solid(p(3.0, 3.0, 0.0), p(7.0, 7.0, 3.0));
        let mesh = Arc::new(Mesh::from_triangles(tris, "block").unwrap());
        let index = Arc::new(TriangleIndex::new(&mesh));
        let stock = Stock::explicit(Aabb {
            min: p(0.0, 0.0, 0.0),
            max: p(10.0, 10.0, 5.0),
        });
        let setup = Setup::new(mesh.hash(), mesh.bounds(), &stock).unwrap();
        (mesh, index, setup)
    }

    fn rest_spec(setup: &Setup, rest: Option<f64>) -> JobSpec {
        let p = RoughingParams {
            stepdown: 1.0,
            rest,
            ..RoughingParams::default()
        };
        setup
            .plan(&Strategy::Roughing(p), Cutter::Flat { diameter: 2.0 })
            .unwrap()
    }

    /// [`block`], the rest roughing spec over it (0.1 mm), and the material it finds when no
    /// operation came before.
    fn uncut() -> (Arc<Mesh>, Arc<TriangleIndex>, Setup, JobSpec, RestMaterial) {
        let (mesh, index, setup) = block();
        let spec = rest_spec(&setup, Some(0.1));
        let m = RestMaterial::left_by(&setup, &[], &spec, &mesh, &index, &CancelToken::new())
            .unwrap()
            .expect("rest roughing");
        (mesh, index, setup, spec, m)
    }

    #[test]
    fn uncut_stock_is_material_on_every_layer_below_its_top() {
        let (mesh, index, setup, spec, m) = uncut();
        let Operation::Rough(r) = &spec.operation else {
            unreachable!()
        };
        assert_eq!(m.layers.len(), r.contours.levels.len());
        assert!(
            (m.cell - 0.1).abs() < 1e-12,
            "a tenth of the radius: {}",
            m.cell
        );
        for (z, rings) in r.contours.levels.iter().zip(&m.layers) {
            // The whole stock: one square ring, 10 × 10 mm.
            assert_eq!(rings.len(), 1, "z {z}: {rings:?}");
            assert!((area(&rings[0]) - 100.0).abs() < 1e-9, "z {z}: {rings:?}");
        }
        // Not rest roughing: nothing to trace.
        let plain = rest_spec(&setup, None);
        let none = RestMaterial::left_by(&setup, &[], &plain, &mesh, &index, &CancelToken::new());
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn a_rest_job_takes_material_for_its_levels_only() {
        let (mesh, index, setup, spec, m) = uncut();
        let ctx = JobContext::new(mesh.clone(), index.clone(), spec).unwrap();
        let mut short = m.clone();
        short.layers.pop();
        let e = ctx.clone().with_rest(Arc::new(short)).unwrap_err();
        assert!(e.to_string().contains("layers for"), "{e}");
        assert!(ctx.with_rest(Arc::new(m.clone())).is_ok());
        let plain = JobContext::new(mesh, index, rest_spec(&setup, None)).unwrap();
        let e = plain.with_rest(Arc::new(m)).unwrap_err();
        assert!(e.to_string().contains("only a rest roughing"), "{e}");
    }

    fn area(ring: &Ring) -> f64 {
        let n = ring.len();
        (0..n)
            .map(|k| {
                let (a, b) = (ring[k], ring[(k + 1) % n]);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum::<f64>()
            / 2.0
    }

    /// An `nx × ny` cell mask, row by row, set where `on(i, j)`.
    fn mask_of((nx, ny): (usize, usize), on: impl Fn(usize, usize) -> bool) -> Vec<bool> {
        (0..ny)
            .flat_map(|j| (0..nx).map(move |i| (i, j)))
            .map(|(i, j)| on(i, j))
            .collect()
    }

    #[test]
    fn a_block_of_cells_is_one_counter_clockwise_square() {
        // 3 × 2 cells of 0.5 mm set in a 5 × 4 grid.
        let (nx, ny) = (5, 4);
        let mask = mask_of((nx, ny), |i, j| (1..4).contains(&i) && (1..3).contains(&j));
        let rings = outlines(&mask, (nx, ny), (0.0, 0.0), 0.5);
        assert_eq!(rings.len(), 1);
        assert_eq!(rings[0].len(), 4, "{:?}", rings[0]);
        assert!((area(&rings[0]) - 1.5).abs() < 1e-12);
        let xs: Vec<f64> = rings[0].iter().map(|p| p[0]).collect();
        assert_eq!(xs.iter().cloned().fold(f64::INFINITY, f64::min), 0.25);
        assert_eq!(xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max), 1.75);
    }

    #[test]
    fn a_hole_is_clockwise_and_diagonal_cells_stay_apart() {
        // A 3 × 3 ring of cells with its centre empty, and two cells touching at a corner.
        let (nx, ny) = (8, 5);
        let mut mask = mask_of((nx, ny), |i, j| i < 3 && j < 3 && !(i == 1 && j == 1));
        mask[3 * nx + 5] = true;
        mask[4 * nx + 6] = true;
        let rings = outlines(&mask, (nx, ny), (0.5, 0.5), 1.0);
        let mut areas: Vec<f64> = rings.iter().map(area).collect();
        areas.sort_by(f64::total_cmp);
        assert_eq!(areas, vec![-1.0, 1.0, 1.0, 9.0], "{rings:?}");
    }
}
