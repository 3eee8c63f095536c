//! An independent oracle for drop-cutter heights.
//!
//! Nothing here shares code with the engine's contact math: it maximises
//! `z(P) - h(|P_xy - c|)` over each triangle by nested searches in barycentric coordinates
//! ([`concave_max`]: an even scan, then dichotomous search; the engine's own search is a
//! golden-section one, so the two do not share a mistake). That function is concave on the
//! (convex) part of the triangle under the cutter for every convex profile `h`, so the search
//! converges to the true maximum; it only ever evaluates real points of the triangle, so it
//! never over-estimates.

use millpond_core::{Cutter, Point3, Triangle};

/// Intervals of each even scan of [`climb`].
const SCAN: usize = 16;
/// Each probe of the dichotomous search stands this share of the bracket off its middle.
const NUDGE: f64 = 0.01;
/// Most rounds of the dichotomous search; it stops sooner, at a bracket of about 1e-15 or
/// where its probes no longer fit apart inside it.
const ROUNDS: usize = 200;

/// The best of `SCAN + 1` evenly spaced points of [a, b], ends included (exactly a and b):
/// (x, f(x)), and the bracket of its two neighbours, in which a concave function's maximum
/// lies (nothing beyond a neighbour is higher than the best point).
fn scan(a: f64, b: f64, f: &impl Fn(f64) -> f64) -> ((f64, f64), (f64, f64)) {
    let at = |k: usize| {
        let t = k as f64 / SCAN as f64;
        a * (1.0 - t) + b * t
    };
    let mut best = (a, f(a));
    let mut best_k = 0;
    for k in 1..=SCAN {
        let x = at(k);
        let v = f(x);
        if v > best.1 {
            best = (x, v);
            best_k = k;
        }
    }
    let bracket = (at(best_k.saturating_sub(1)), at((best_k + 1).min(SCAN)));
    (best, bracket)
}

/// The highest point found of a concave function on [a, b]: (x, f(x)), f's value at a real
/// point of [a, b].
///
/// An even scan brackets the maximum; dichotomous search narrows the bracket (of two probes
/// just either side of its middle, the maximum is not beyond the lower one, and lies between
/// them where they are equal) to about 1e-15, or until the probes would round together; a
/// last even scan of that bracket picks the point. About 1.3 times the evaluations of a
/// golden-section search, for a maximum as close or closer.
fn climb(a: f64, b: f64, f: impl Fn(f64) -> f64) -> (f64, f64) {
    let (mut best, (mut lo, mut hi)) = scan(a, b, &f);
    let mut keep = |p: (f64, f64)| {
        if p.1 > best.1 {
            best = p;
        }
    };
    for _ in 0..ROUNDS {
        let w = hi - lo;
        let mid = lo + 0.5 * w;
        let (l, r) = (mid - NUDGE * w, mid + NUDGE * w);
        if w <= 1e-15 * (1.0 + lo.abs() + hi.abs()) || !(lo < l && l < r && r < hi) {
            break;
        }
        let (fl, fr) = (f(l), f(r));
        keep((l, fl));
        keep((r, fr));
        if fl < fr {
            lo = l;
        } else if fr < fl {
            hi = r;
        } else {
            (lo, hi) = (l, r);
        }
    }
    keep(scan(lo, hi, &f).0);
    best
}

/// Maximum of a concave function on [a, b] ([`climb`]).
pub fn concave_max(a: f64, b: f64, f: impl Fn(f64) -> f64) -> f64 {
    climb(a, b, f).1
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
    let s_mid = climb(0.0, 1.0, |s| -dist2(s)).0;
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
        Some((u0, u1)) => concave_max(u0, u1, |u| value(s, u)),
        None => f64::NEG_INFINITY,
    };
    Some(concave_max(s0, s1, inner))
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
