//! Links within an operation: how the tool gets from the end of one pass to the start of the
//! next when the straight move between them would cut into the model (ARCHITECTURE.md §5).
//!
//! In order of preference, every one proven clear of the model (the job's contact, the tool
//! grown by the allowance) by the exact swept test (`DropCutter::max_rise_along`):
//! 1. a direct feed move (decided by each strategy: `raster::move_is_clear`, or roughing's
//!    clear area);
//! 2. for a link no longer than [`Links::stay_down`], a feed move along the surface
//!    ([`surface_link`]): the dropped cutter's heights along the straight XY line, lifted
//!    over whatever the straight move between two of them would cut;
//! 3. a hop at the clearance height ([`Links::clearance_z`], a little above the stock top, so
//!    above any material) where the straight move there is clear of the model by
//!    `FEED_CLEARANCE` (1 mm) at least;
//! 4. otherwise a hop at the full safe height.
//!
//! Hops go straight up from a tool position and straight down onto one (a tool position is
//! clear of the model, and so is everything straight above it), rapid to `FEED_CLEARANCE`
//! above the target and plunge the rest; the stock check posts each straight-down rapid
//! to stop above the material as it stands.

use crate::drop::DropCutter;
use crate::error::JobError;
use crate::geom::Point3;
use crate::raster::{FEED_CLEARANCE, approach, merge, move_is_clear};
use crate::toolpath::{MoveKind, Toolpath};
use serde::{Deserialize, Serialize};

/// Height of the clearance plane above the stock top, mm.
pub const LINK_CLEARANCE: f64 = 2.0;

/// Links that stay down may be this many tool diameters long (XY distance). Beyond it a hop
/// is usually quicker: a hobby machine's rapids are about five times its cutting feed.
pub const STAY_DOWN_DIAMETERS: f64 = 2.0;

/// How an operation links its passes. `clearance_z = safe_z` with `stay_down = 0` links the
/// way Millpond did before: every link that is not a direct move goes by the safe height.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Links {
    /// Height of hops within the operation: the stock top plus [`LINK_CLEARANCE`], at most
    /// the safe height. Used only where the straight move at that height is clear of the
    /// model (by 1 mm); above the stock top it is clear of the material.
    pub clearance_z: f64,
    /// Longest link, in XY, that may follow the surface as a feed move instead of lifting,
    /// mm (0: none).
    pub stay_down: f64,
}

impl Links {
    /// The links of an operation in a stock whose top is `stock_top`, with a tool
    /// `diameter` wide.
    pub fn new(stock_top: f64, safe_z: f64, diameter: f64) -> Self {
        Self {
            clearance_z: (stock_top + LINK_CLEARANCE).min(safe_z),
            stay_down: STAY_DOWN_DIAMETERS * diameter,
        }
    }

    /// Every link by the safe height (the old behaviour; tests compare against it).
    pub fn at_safe_height(safe_z: f64) -> Self {
        Self {
            clearance_z: safe_z,
            stay_down: 0.0,
        }
    }

    pub fn validate(&self) -> Result<(), JobError> {
        if !self.clearance_z.is_finite() {
            return Err(JobError::Invalid(format!(
                "link clearance height must be finite, got {}",
                self.clearance_z
            )));
        }
        if !(self.stay_down.is_finite() && self.stay_down >= 0.0) {
            return Err(JobError::Invalid(format!(
                "the longest link that stays down must be zero or positive, got {}",
                self.stay_down
            )));
        }
        Ok(())
    }
}

/// Moves the tool from where it is to `to` lifted: straight up, across, straight down (rapid
/// to `FEED_CLEARANCE` above `to`, then plunge). Across at the clearance height (or the
/// higher of the two ends) where the straight move `FEED_CLEARANCE` lower is clear of
/// `model`, otherwise at `safe_z`.
pub fn hop(tp: &mut Toolpath, model: &DropCutter<'_>, to: Point3, links: &Links, safe_z: f64) {
    let here = tp.end();
    let h = links.clearance_z.max(here.z).max(to.z);
    // Clear with room to spare: a rapid never grazes the model.
    let across_clear = || {
        let below = h - FEED_CLEARANCE;
        move_is_clear(
            model,
            Point3::new(here.x, here.y, below),
            Point3::new(to.x, to.y, below),
        )
    };
    if h < safe_z && across_clear() {
        approach(tp, to, h);
    } else {
        approach(tp, to, safe_z);
    }
}

/// Most points dropped along one surface link.
const SURFACE_SAMPLES: f64 = 256.0;

/// A feed path from `a` to `b` (both tool positions: clear of the model, as is everything
/// straight above them) that stays down along the surface: the XY line from `a` to `b`
/// sampled every `step` (at most 256 samples), each sample at the dropped cutter's height on
/// `model` but no lower than `low`. Where the straight move between two samples would cut
/// into the model (the exact swept test; between samples a convex surface bulges above the
/// chord), both its ends are raised by as much as it would cut in — raising an end only
/// raises the moves that share it, so one pass makes every move clear — and at `a` and `b`,
/// which stay where they are, the path steps straight up or down. Points are merged where
/// the merged move is still proven clear. `None` if any move is not proven clear in the end
/// (it always is, up to rounding). Returns the points after `a`, ending with `b`.
pub fn surface_link(
    model: &DropCutter<'_>,
    a: Point3,
    b: Point3,
    low: f64,
    step: f64,
) -> Option<Vec<Point3>> {
    let tol = crate::raster::LINK_TOLERANCE;
    let len = (b.x - a.x).hypot(b.y - a.y);
    if len == 0.0 {
        // Straight down or up between two tool positions.
        return Some(vec![b]);
    }
    let n = if step > 0.0 {
        (len / step).ceil().clamp(1.0, SURFACE_SAMPLES) as usize
    } else {
        1
    };
    let xy = |i: usize| {
        let t = i as f64 / n as f64;
        (a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t)
    };
    // Heights of the samples 0..=n; the ends' are how high the path leaves `a` and reaches
    // `b`.
    let mut z: Vec<f64> = (0..=n)
        .map(|i| match i {
            0 => a.z,
            i if i == n => b.z,
            i => {
                let (x, y) = xy(i);
                model.at(x, y).max(low)
            }
        })
        .collect();
    let at = |i: usize, z: f64| {
        let (x, y) = if i == n { (b.x, b.y) } else { xy(i) };
        let (x, y) = if i == 0 { (a.x, a.y) } else { (x, y) };
        Point3::new(x, y, z)
    };
    for i in 0..n {
        let rise = model.max_rise_along(at(i, z[i]), at(i + 1, z[i + 1]), f64::INFINITY);
        if rise > tol {
            // (Plus the tolerance, so that rounding in the search never fails the check.)
            z[i] += rise + tol;
            z[i + 1] += rise + tol;
        }
    }
    let mut path: Vec<Point3> = Vec::with_capacity(n + 2);
    path.push(a);
    if z[0] > a.z {
        path.push(at(0, z[0]));
    }
    path.extend((1..n).map(|i| at(i, z[i])));
    if z[n] > b.z {
        path.push(at(n, z[n]));
    }
    path.push(b);
    if !path.windows(2).all(|w| move_is_clear(model, w[0], w[1])) {
        return None;
    }
    // Merge straight runs (distance along the link against height) between the vertical
    // steps at the ends; keep a merged move only where it is still proven clear.
    let first = usize::from(z[0] > a.z);
    let last = path.len() - 1 - usize::from(z[n] > b.z);
    let run = &path[first..=last];
    let t: Vec<f64> = run.iter().map(|p| (p.x - a.x).hypot(p.y - a.y)).collect();
    let zs: Vec<f64> = run.iter().map(|p| p.z).collect();
    let keep = merge(&t, &zs, crate::raster::DEFAULT_MERGE_TOLERANCE);
    let mut out: Vec<Point3> = path[1..=first].to_vec();
    let mut from = 0;
    for &k in keep.iter().skip(1) {
        if move_is_clear(model, run[from], run[k]) {
            out.push(run[k]);
        } else {
            out.extend_from_slice(&run[from + 1..=k]);
        }
        from = k;
    }
    out.extend_from_slice(&path[last + 1..]);
    Some(out)
}

/// Links the tool from where it is to `to`, a tool position, when the direct move is not
/// clear: along the surface (no lower than `low`, sampled every `step`) when the link is no
/// longer than `links.stay_down`, otherwise (or if that fails) by a hop.
pub fn link_to(
    tp: &mut Toolpath,
    model: &DropCutter<'_>,
    to: Point3,
    links: &Links,
    safe_z: f64,
    low: f64,
    step: f64,
) {
    let here = tp.end();
    if (to.x - here.x).hypot(to.y - here.y) <= links.stay_down
        && let Some(path) = surface_link(model, here, to, low, step)
    {
        for p in path {
            tp.push(MoveKind::Cut, p);
        }
        return;
    }
    hop(tp, model, to, links, safe_z);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutter::Cutter;
    use crate::index::TriangleIndex;
    use crate::mesh::Mesh;
    use crate::models;

    /// The worst the dropped cutter rises above a straight move, sampled every 0.01 mm.
    fn sampled_rise(dc: &DropCutter<'_>, a: Point3, b: Point3) -> f64 {
        let n = (((b.x - a.x).hypot(b.y - a.y) / 0.01).ceil() as usize).max(1);
        (0..=n)
            .map(|k| {
                let p = a + (b - a) * (k as f64 / n as f64);
                dc.at(p.x, p.y) - p.z
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    #[test]
    fn surface_links_follow_the_surface_and_never_cut_in() {
        let mesh = Mesh::from_triangles(models::terrain_relief(90), "terrain").unwrap();
        let index = TriangleIndex::new(&mesh);
        for cutter in [
            Cutter::Ball { diameter: 3.0 },
            Cutter::Flat { diameter: 2.0 },
        ] {
            let dc = DropCutter::new(&mesh, &index, cutter, f64::NEG_INFINITY);
            let mut seed = 7u64;
            let mut rand = |lo: f64, hi: f64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                lo + (hi - lo) * ((seed >> 11) as f64 / (1u64 << 53) as f64)
            };
            let (mut stairs, mut moves) = (0, 0);
            for k in 0..60 {
                let (x, y) = (rand(5.0, 115.0), rand(5.0, 85.0));
                let (dir, len) = (rand(0.0, std::f64::consts::TAU), rand(0.5, 8.0));
                let (x2, y2) = (x + len * dir.cos(), y + len * dir.sin());
                // Ends on the surface, or a level below it (as a waterline link's are).
                let low = if k % 2 == 0 {
                    f64::NEG_INFINITY
                } else {
                    rand(2.0, 12.0)
                };
                let a = Point3::new(x, y, dc.at(x, y).max(low));
                let b = Point3::new(x2, y2, dc.at(x2, y2).max(low));
                let path = surface_link(&dc, a, b, low, 0.2).expect("a surface link");
                assert_eq!(*path.last().unwrap(), b);
                let mut p = a;
                for &q in &path {
                    let rise = sampled_rise(&dc, p, q);
                    assert!(rise <= 1e-6, "{cutter}: {p:?} -> {q:?} cuts in by {rise}");
                    assert!(q.z >= low, "{cutter}: {q:?} below {low}");
                    if q.x == p.x && q.y == p.y {
                        stairs += 1;
                    }
                    p = q;
                }
                moves += path.len();
                // It follows the surface: never higher than needed by more than the stairs'
                // tops, which stand on what the straight moves would have met.
                let highest = path.iter().map(|q| q.z).fold(f64::NEG_INFINITY, f64::max);
                let n = 400;
                let top = (0..=n)
                    .map(|i| {
                        let t = i as f64 / n as f64;
                        dc.at(a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t).max(low)
                    })
                    .fold(f64::NEG_INFINITY, f64::max);
                assert!(
                    highest <= top + 0.5,
                    "{cutter}: {highest} over a top of {top}"
                );
            }
            assert!(moves > 60, "{cutter}: {moves} moves");
            eprintln!("{cutter}: {moves} moves, {stairs} stair steps");
        }
    }

    #[test]
    fn hops_go_low_only_where_the_move_there_is_clear() {
        // A 10 mm block on a 2 mm plate; the stock top at 8 mm is below the block's top.
        let p = Point3::new;
        let mut tris = models::box_solid(p(0.0, 0.0, 0.0), p(40.0, 20.0, 2.0));
        tris.extend(models::box_solid(p(18.0, 0.0, 2.0), p(22.0, 20.0, 10.0)));
        let mesh = Mesh::from_triangles(tris, "block").unwrap();
        let index = TriangleIndex::new(&mesh);
        let dc = DropCutter::new(
            &mesh,
            &index,
            Cutter::Flat { diameter: 4.0 },
            f64::NEG_INFINITY,
        );
        let links = Links::new(8.0, 20.0, 4.0);
        assert_eq!(links.clearance_z, 10.0);
        let hop_height = |from: Point3, to: Point3| {
            let mut tp = Toolpath::new(from);
            hop(&mut tp, &dc, to, &links, 20.0);
            assert_eq!(tp.end(), to);
            tp.moves[1].to.z
        };
        // Over the block at 10 mm the tool would graze its top: only at safe height.
        let (a, b) = (Point3::new(5.0, 10.0, 2.0), Point3::new(35.0, 10.0, 2.0));
        assert_eq!(hop_height(a, b), 20.0);
        // Beside the block the clearance height serves.
        let c = Point3::new(5.0, 18.0, 2.0);
        assert_eq!(hop_height(a, c), 10.0);
        // A short link beside the block stays down; one over it climbs the block.
        let mut tp = Toolpath::new(a);
        link_to(&mut tp, &dc, c, &links, 20.0, 2.0, 0.1);
        assert!(
            tp.moves
                .iter()
                .all(|m| m.kind == MoveKind::Cut && m.to.z == 2.0)
        );
        let (d, e) = (Point3::new(15.5, 10.0, 2.0), Point3::new(24.5, 10.0, 2.0));
        let mut tp = Toolpath::new(d);
        let longer = Links {
            stay_down: 10.0,
            ..links
        };
        link_to(&mut tp, &dc, e, &longer, 20.0, 2.0, 0.1);
        assert!(tp.moves.iter().all(|m| m.kind == MoveKind::Cut));
        let top = tp.highest_move_z();
        assert!(
            (top - 10.0).abs() < 1e-5,
            "climbs to the block's top: {top}"
        );
    }
}
