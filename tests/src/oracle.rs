//! An independent oracle for drop-cutter heights.
//!
//! Nothing here shares code with the engine's contact math: it maximises
//! `z(P) - h(|P_xy - c|)` over each triangle by nested golden-section search in barycentric
//! coordinates. That function is concave on the (convex) part of the triangle under the
//! cutter for every convex profile `h`, so the search converges to the true maximum; it only
//! ever evaluates real points of the triangle, so it never over-estimates.

use millpond_core::{Cutter, Point3, Triangle};

const ITERS: usize = 90;
const PHI: f64 = 0.618_033_988_749_894_8;

/// Maximum of a concave function on [a, b] by golden-section search.
pub fn golden_max(mut a: f64, mut b: f64, f: impl Fn(f64) -> f64) -> f64 {
    let mut best = f(a).max(f(b));
    let mut x1 = b - PHI * (b - a);
    let mut x2 = a + PHI * (b - a);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..ITERS {
        if b - a <= 1e-15 * (1.0 + a.abs() + b.abs()) {
            break;
        }
        if f1 < f2 {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + PHI * (b - a);
            f2 = f(x2);
        } else {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - PHI * (b - a);
            f1 = f(x1);
        }
        best = best.max(f1).max(f2);
    }
    best.max(f1).max(f2)
}

/// Minimum of a convex function on [a, b] (argmin), by golden-section search.
fn golden_argmin(mut a: f64, mut b: f64, f: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..200 {
        let x1 = b - PHI * (b - a);
        let x2 = a + PHI * (b - a);
        if f(x1) <= f(x2) {
            b = x2;
        } else {
            a = x1;
        }
    }
    0.5 * (a + b)
}

/// The sub-interval of [0, tmax] where |q + t·d| ≤ r, if any.
fn disk_interval(q: (f64, f64), d: (f64, f64), r: f64, tmax: f64) -> Option<(f64, f64)> {
    let a = d.0 * d.0 + d.1 * d.1;
    let b = 2.0 * (q.0 * d.0 + q.1 * d.1);
    let c = q.0 * q.0 + q.1 * q.1 - r * r;
    let (lo, hi) = if a == 0.0 {
        if c > 0.0 {
            return None;
        }
        (0.0, tmax)
    } else {
        let disc = b * b - 4.0 * a * c;
        if disc < 0.0 {
            return None;
        }
        let sq = disc.sqrt();
        ((-b - sq) / (2.0 * a), (-b + sq) / (2.0 * a))
    };
    let (lo, hi) = (lo.max(0.0), hi.min(tmax));
    (lo <= hi).then_some((lo, hi))
}

/// Highest tip z at which the cutter at (cx, cy) touches triangle `t` (or None).
pub fn touch(cutter: &Cutter, t: &Triangle, cx: f64, cy: f64) -> Option<f64> {
    let r = cutter.radius();
    let [a, b, c] = t.v;
    let (ab, ac) = (b - a, c - a);
    let point = |s: f64, u: f64| a + ab * s + ac * u;
    let value = |s: f64, u: f64| {
        let p: Point3 = point(s, u);
        let rho = (p.x - cx).hypot(p.y - cy).min(r);
        p.z - cutter.height_at(rho)
    };
    // For a given s, the feasible u-interval (inside the triangle and under the cutter).
    let slice = |s: f64| {
        let q = (a.x + ab.x * s - cx, a.y + ab.y * s - cy);
        disk_interval(q, (ac.x, ac.y), r, 1.0 - s)
    };
    // Distance² from the axis to the slice: convex in s. Find the s range where the slice
    // is non-empty around its minimiser.
    let dist2 = |s: f64| {
        let q = (a.x + ab.x * s - cx, a.y + ab.y * s - cy);
        let d = (ac.x, ac.y);
        let dd = d.0 * d.0 + d.1 * d.1;
        let u = if dd > 0.0 {
            (-(q.0 * d.0 + q.1 * d.1) / dd).clamp(0.0, 1.0 - s)
        } else {
            0.0
        };
        (q.0 + u * d.0).powi(2) + (q.1 + u * d.1).powi(2)
    };
    let s_mid = golden_argmin(0.0, 1.0, dist2);
    let s_mid = [0.0, s_mid, 1.0]
        .into_iter()
        .min_by(|x, y| dist2(*x).total_cmp(&dist2(*y)))
        .unwrap_or(s_mid);
    slice(s_mid)?;
    let edge = |mut inside: f64, mut outside: f64| {
        if slice(outside).is_some() {
            return outside;
        }
        for _ in 0..200 {
            let m = 0.5 * (inside + outside);
            if slice(m).is_some() {
                inside = m;
            } else {
                outside = m;
            }
        }
        inside
    };
    let (s0, s1) = (edge(s_mid, 0.0), edge(s_mid, 1.0));
    let inner = |s: f64| match slice(s) {
        Some((u0, u1)) => golden_max(u0, u1, |u| value(s, u)),
        None => f64::NEG_INFINITY,
    };
    Some(golden_max(s0, s1, inner))
}

/// Drop-cutter height over a set of triangles, by the oracle.
pub fn drop(cutter: &Cutter, tris: &[Triangle], cx: f64, cy: f64, floor: f64) -> f64 {
    let r = cutter.radius();
    tris.iter()
        .filter(|t| {
            let (x0, x1) = (
                t.v.iter().map(|p| p.x).fold(f64::INFINITY, f64::min),
                t.v.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max),
            );
            let (y0, y1) = (
                t.v.iter().map(|p| p.y).fold(f64::INFINITY, f64::min),
                t.v.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max),
            );
            cx + r >= x0 && cx - r <= x1 && cy + r >= y0 && cy - r <= y1
        })
        .filter_map(|t| touch(cutter, t, cx, cy))
        .fold(floor, f64::max)
}
