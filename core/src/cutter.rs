//! Cutters and their exact contact math.
//!
//! Every cutter here is rotationally symmetric about +Z and described by its *profile*
//! `h(ρ)`: the height of the cutting surface above the tool tip at distance `ρ ≤ R` from the
//! axis. All four profiles are convex and non-decreasing, which is what makes the contact
//! math exact and simple:
//!
//! * against a plane, the highest touching position is found at the plane's *support point*
//!   on the cutter, a closed form per shape;
//! * against an edge, the tip height as a function of the position along the edge is
//!   `z(t) - h(ρ(t))`, a concave function, so its maximum over the part of the edge under
//!   the cutter is its stationary point clamped to that interval — closed form for flat, ball
//!   and V-bit, a safeguarded Newton iteration on a monotone derivative for the bull nose.
//!
//! Vertices are the end points of the edge intervals and need no separate test.

use crate::geom::{max, min};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// A milling cutter. Sizes in millimetres, the V-bit angle in degrees (included angle).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cutter {
    /// Flat end mill: a cylinder with a flat bottom.
    Flat { diameter: f64 },
    /// Ball nose: a cylinder ending in a hemisphere.
    Ball { diameter: f64 },
    /// Bull nose: a flat bottom with a rounded corner of `corner_radius` (a torus).
    Bull { diameter: f64, corner_radius: f64 },
    /// V-bit: a cone with its point at the tip, `included_angle` between opposite flanks.
    VBit { diameter: f64, included_angle: f64 },
}

/// A cutter specification that cannot describe a real tool.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum CutterError {
    #[error(
        "unknown tool \"{0}\": expected flat:D, ball:D, bull:D:R or vbit:D:ANGLE (millimetres, degrees)"
    )]
    Syntax(String),
    #[error("tool diameter must be a positive finite number of millimetres, got {0}")]
    Diameter(f64),
    #[error(
        "bull nose corner radius must be positive and less than half the diameter ({half}), got {radius}"
    )]
    CornerRadius { radius: f64, half: f64 },
    #[error("V-bit included angle must be between 1 and 179 degrees, got {0}")]
    Angle(f64),
    #[error("material allowance must be a finite number of millimetres, 0 or more, got {0}")]
    Allowance(f64),
    #[error(
        "material allowance is not available with a V-bit: use a flat, ball or bull nose tool, or 0 allowance"
    )]
    AllowanceVBit,
}

impl Cutter {
    /// Checks that the numbers describe a real tool.
    pub fn validate(&self) -> Result<(), CutterError> {
        let d = self.diameter();
        if !(d.is_finite() && d > 0.0 && d < 1e4) {
            return Err(CutterError::Diameter(d));
        }
        match *self {
            Cutter::Bull { corner_radius, .. } => {
                if !(corner_radius.is_finite() && corner_radius > 0.0 && corner_radius < d / 2.0) {
                    return Err(CutterError::CornerRadius {
                        radius: corner_radius,
                        half: d / 2.0,
                    });
                }
            }
            Cutter::VBit { included_angle, .. } => {
                if !(included_angle.is_finite() && (1.0..=179.0).contains(&included_angle)) {
                    return Err(CutterError::Angle(included_angle));
                }
            }
            Cutter::Flat { .. } | Cutter::Ball { .. } => {}
        }
        Ok(())
    }

    /// The tool grown by a ball of radius `allowance` (its Minkowski sum): the shape whose
    /// contact with the mesh, `allowance` lower, is the real tool keeping exactly `allowance`
    /// away from the mesh. A flat end mill grows into a bull nose, a ball into a bigger ball,
    /// a bull nose into a bigger bull nose. A V-bit grows into a cone with a rounded point,
    /// which is not one of the four shapes: refused with a clear error.
    pub fn grown(&self, allowance: f64) -> Result<Cutter, CutterError> {
        if !(0.0..1e3).contains(&allowance) {
            return Err(CutterError::Allowance(allowance));
        }
        if allowance == 0.0 {
            return Ok(*self);
        }
        let grown = match *self {
            Cutter::Flat { diameter } => Cutter::Bull {
                diameter: diameter + 2.0 * allowance,
                corner_radius: allowance,
            },
            Cutter::Ball { diameter } => Cutter::Ball {
                diameter: diameter + 2.0 * allowance,
            },
            Cutter::Bull {
                diameter,
                corner_radius,
            } => Cutter::Bull {
                diameter: diameter + 2.0 * allowance,
                corner_radius: corner_radius + allowance,
            },
            Cutter::VBit { .. } => return Err(CutterError::AllowanceVBit),
        };
        grown.validate()?;
        Ok(grown)
    }

    pub fn diameter(&self) -> f64 {
        match *self {
            Cutter::Flat { diameter }
            | Cutter::Ball { diameter }
            | Cutter::Bull { diameter, .. }
            | Cutter::VBit { diameter, .. } => diameter,
        }
    }

    pub fn radius(&self) -> f64 {
        self.diameter() / 2.0
    }

    /// Height of the cutting surface above the tip at distance `rho` from the axis
    /// (`rho` is clamped to the radius).
    pub fn height_at(&self, rho: f64) -> f64 {
        self.profile().height(rho.clamp(0.0, self.radius()))
    }

    /// Height of the cutting part (where the profile meets the shank): R for a ball, the
    /// corner radius for a bull nose, the cone height for a V-bit, 0 for a flat end mill.
    pub fn cutting_height(&self) -> f64 {
        self.height_at(self.radius())
    }

    /// The profile used by the contact math.
    pub fn profile(&self) -> Profile {
        match *self {
            Cutter::Flat { diameter } => Profile::Flat(FlatProfile { r: diameter / 2.0 }),
            Cutter::Ball { diameter } => Profile::Ball(BallProfile {
                r: diameter / 2.0,
                lb: LOWER * (4.0 / (diameter * diameter)),
            }),
            Cutter::Bull {
                diameter,
                corner_radius,
            } => {
                let r = diameter / 2.0;
                Profile::Bull(BullProfile {
                    r,
                    a: r - corner_radius,
                    c: corner_radius,
                    lb: LOWER / (8.0 * r * r * corner_radius),
                })
            }
            Cutter::VBit {
                diameter,
                included_angle,
            } => {
                let half = (included_angle / 2.0).to_radians();
                let k = 1.0 / half.tan();
                Profile::VBit(VBitProfile {
                    r: diameter / 2.0,
                    k,
                    lb: LOWER * k / (diameter / 2.0),
                })
            }
        }
    }
}

impl fmt::Display for Cutter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cutter::Flat { diameter } => write!(f, "flat:{diameter}"),
            Cutter::Ball { diameter } => write!(f, "ball:{diameter}"),
            Cutter::Bull {
                diameter,
                corner_radius,
            } => write!(f, "bull:{diameter}:{corner_radius}"),
            Cutter::VBit {
                diameter,
                included_angle,
            } => write!(f, "vbit:{diameter}:{included_angle}"),
        }
    }
}

impl FromStr for Cutter {
    type Err = CutterError;

    /// Parses `flat:D`, `ball:D`, `bull:D:R` or `vbit:D:ANGLE`, and validates the result.
    fn from_str(s: &str) -> Result<Self, CutterError> {
        let syntax = || CutterError::Syntax(s.to_string());
        let parts: Vec<&str> = s.trim().split(':').collect();
        let num = |i: usize| -> Result<f64, CutterError> {
            parts
                .get(i)
                .and_then(|p| p.trim().parse::<f64>().ok())
                .ok_or_else(syntax)
        };
        let cutter = match (parts[0].to_ascii_lowercase().as_str(), parts.len()) {
            ("flat", 2) => Cutter::Flat { diameter: num(1)? },
            ("ball", 2) => Cutter::Ball { diameter: num(1)? },
            ("bull", 3) => Cutter::Bull {
                diameter: num(1)?,
                corner_radius: num(2)?,
            },
            ("vbit", 3) => Cutter::VBit {
                diameter: num(1)?,
                included_angle: num(2)?,
            },
            _ => return Err(syntax()),
        };
        cutter.validate()?;
        Ok(cutter)
    }
}

/// The contact math of one cutter shape. Implemented per shape so that the hot loops are
/// monomorphised (one `match` per job, not per triangle).
pub trait Shape: Copy + Send + Sync + fmt::Debug {
    /// Cutter radius R.
    fn radius(&self) -> f64;
    /// Profile height `h(ρ)` for `0 ≤ ρ ≤ R`.
    fn height(&self, rho: f64) -> f64;
    /// `h(ρ)` from `ρ²`, with `ρ` clamped to R: the height at a vertex, from its squared
    /// distance computed directly (see `drop::touch`).
    fn height_sq(&self, rho2: f64) -> f64 {
        self.height(rho2.sqrt().min(self.radius()))
    }
    /// A lower bound of `h(ρ)` from `ρ²`, cheap enough to prune triangles with; for `ρ`
    /// slightly past R (by the pruning's margin) a lower bound of `h(R)`.
    fn height_lower_bound(&self, rho2: f64) -> f64;
    /// Contact with a plane whose upward unit normal is `(nx, ny, nz)`, `nz > 0`: the XY
    /// offset from the tool axis to the contact point and the profile height there.
    fn plane_contact(&self, nx: f64, ny: f64, nz: f64) -> (f64, f64, f64);
    /// The `w` in `[lo, hi]` (with `lo ≤ hi`, both within `±sqrt(R² - d²)`) maximising
    /// `m·w - h(sqrt(d² + w²))`: where a straight edge of slope `m` (dz per unit of
    /// horizontal length), passing at horizontal distance `d` from the axis, touches.
    fn edge_argmax(&self, m: f64, d2: f64, lo: f64, hi: f64) -> f64 {
        let s2 = self.radius() * self.radius() - d2;
        self.edge_contact(m, self.edge_constant(m), d2, s2, lo, hi)
            .0
    }
    /// A per-edge constant that `edge_contact` needs, computed once per edge from its slope.
    fn edge_constant(&self, m: f64) -> f64;
    /// As `edge_argmax`, also returning the profile height at the contact. `s2 = R² - d²`
    /// and `c = edge_constant(m)`: the hot loop has both at hand, and they turn the ball's
    /// contact into one square root.
    fn edge_contact(&self, m: f64, c: f64, d2: f64, s2: f64, lo: f64, hi: f64) -> (f64, f64);
    /// True only when `h(ρ) ≥ h` for sure (`ρ² = rho2`), decided without a square root
    /// where the shape allows, with a margin against rounding: the stock simulator skips the
    /// cells a tool end stays above. `false` means "compute it".
    fn surely_at_least(&self, rho2: f64, h: f64) -> bool {
        let _ = (rho2, h);
        false
    }
}

/// Scales the pruning bounds' constants down a hair, so that neither their rounding nor the
/// pruning's reach past R (`drop::REACH_MARGIN`, 1e-9: the bounds are used out to
/// `(R·(1 + 1e-9))²`) can ever lift a bound above the true profile height.
const LOWER: f64 = 1.0 - 1e-8;

/// The four shapes behind one enum, for code that is not hot.
#[derive(Clone, Copy, Debug)]
pub enum Profile {
    Flat(FlatProfile),
    Ball(BallProfile),
    Bull(BullProfile),
    VBit(VBitProfile),
}

impl Profile {
    pub fn height(&self, rho: f64) -> f64 {
        match self {
            Profile::Flat(p) => p.height(rho),
            Profile::Ball(p) => p.height(rho),
            Profile::Bull(p) => p.height(rho),
            Profile::VBit(p) => p.height(rho),
        }
    }
}

/// Calls `$body` with `$p` bound to the concrete shape inside `$profile`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_shape {
    ($profile:expr, $p:ident => $body:expr) => {
        match $profile {
            $crate::cutter::Profile::Flat($p) => $body,
            $crate::cutter::Profile::Ball($p) => $body,
            $crate::cutter::Profile::Bull($p) => $body,
            $crate::cutter::Profile::VBit($p) => $body,
        }
    };
}

/// Where a concave function with derivative sign given by `slope` peaks on `[lo, hi]`
/// when it is linear: at the end it rises towards.
fn linear_argmax(m: f64, lo: f64, hi: f64) -> f64 {
    if m > 0.0 {
        hi
    } else if m < 0.0 {
        lo
    } else {
        0.0f64.clamp(lo, hi)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct FlatProfile {
    r: f64,
}

impl Shape for FlatProfile {
    fn radius(&self) -> f64 {
        self.r
    }
    fn height(&self, _rho: f64) -> f64 {
        0.0
    }
    fn height_sq(&self, _rho2: f64) -> f64 {
        0.0
    }
    fn height_lower_bound(&self, _rho2: f64) -> f64 {
        0.0
    }
    fn plane_contact(&self, nx: f64, ny: f64, _nz: f64) -> (f64, f64, f64) {
        let nxy = nx.hypot(ny);
        if nxy == 0.0 {
            return (0.0, 0.0, 0.0);
        }
        // The bottom disk rests on its rim point furthest uphill.
        (-self.r * nx / nxy, -self.r * ny / nxy, 0.0)
    }
    fn edge_constant(&self, _m: f64) -> f64 {
        0.0
    }
    fn edge_contact(&self, m: f64, _c: f64, _d2: f64, _s2: f64, lo: f64, hi: f64) -> (f64, f64) {
        (linear_argmax(m, lo, hi), 0.0)
    }
    fn surely_at_least(&self, _rho2: f64, h: f64) -> bool {
        h <= 0.0
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BallProfile {
    r: f64,
    /// 1/R², a hair small, for `height_lower_bound` without a division.
    lb: f64,
}

impl Shape for BallProfile {
    fn radius(&self) -> f64 {
        self.r
    }
    fn height(&self, rho: f64) -> f64 {
        self.height_sq(rho * rho)
    }
    fn height_sq(&self, rho2: f64) -> f64 {
        let s2 = (self.r * self.r - rho2).max(0.0);
        self.r - s2.sqrt()
    }
    fn height_lower_bound(&self, rho2: f64) -> f64 {
        // With x = ρ²/R²: h = R·(1 - sqrt(1 - x)) = R·(x/2 + x²/8 + x³/16 + …), every term
        // positive, so the first three are a lower bound (exact to 3% at ρ = 0.7R).
        let x = rho2 * self.lb;
        self.r * x * (0.5 + x * (0.125 + x * 0.0625)) * LOWER
    }
    fn plane_contact(&self, nx: f64, ny: f64, nz: f64) -> (f64, f64, f64) {
        // The sphere centre sits R along the normal from the contact point.
        (-self.r * nx, -self.r * ny, self.r * (1.0 - nz))
    }
    fn edge_constant(&self, m: f64) -> f64 {
        1.0 / (1.0 + m * m).sqrt()
    }
    fn surely_at_least(&self, rho2: f64, h: f64) -> bool {
        // R - sqrt(R² - ρ²) ≥ h  ⇔  R² - ρ² ≤ (R - h)², for h ≤ R.
        let (r2, q) = (self.r * self.r, self.r - h);
        h <= self.r && r2 - rho2 < q * q * (1.0 - 1e-9) - 1e-12 * r2
    }
    fn edge_contact(&self, m: f64, c: f64, _d2: f64, s2: f64, lo: f64, hi: f64) -> (f64, f64) {
        // In the vertical plane of the edge the ball is a circle of radius s; a line of
        // slope m touches it at w = m·s / sqrt(1 + m²), where the circle is s / sqrt(1 + m²)
        // below its centre.
        let s = max(s2, 0.0).sqrt();
        let w = m * s * c;
        if w >= lo && w <= hi {
            (w, self.r - s * c)
        } else {
            let w = min(max(w, lo), hi);
            (w, self.r - max(s2 - w * w, 0.0).sqrt())
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BullProfile {
    r: f64,
    /// Radius of the flat bottom (R minus the corner radius).
    a: f64,
    /// Corner radius.
    c: f64,
    /// 1/(8R²c), a hair small, for `height_lower_bound`.
    lb: f64,
}

impl BullProfile {
    /// `h'(ρ)` and `h''(ρ)` on the torus part.
    fn derivatives(&self, rho: f64) -> (f64, f64) {
        let u = rho - self.a;
        if u <= 0.0 {
            return (0.0, 0.0);
        }
        let q = (self.c * self.c - u * u).max(f64::MIN_POSITIVE);
        let sq = q.sqrt();
        (u / sq, self.c * self.c / (q * sq))
    }
}

impl Shape for BullProfile {
    fn radius(&self) -> f64 {
        self.r
    }
    fn height(&self, rho: f64) -> f64 {
        let u = rho - self.a;
        if u <= 0.0 {
            0.0
        } else {
            self.c - (self.c * self.c - u * u).max(0.0).sqrt()
        }
    }
    fn height_lower_bound(&self, rho2: f64) -> f64 {
        // For ρ > a: h ≥ (ρ - a)² / 2c, and (ρ - a)² ≥ (ρ² - a²)² / (ρ + a)² ≥ (ρ² - a²)² / 4R².
        let excess = rho2 - self.a * self.a;
        if excess <= 0.0 {
            0.0
        } else {
            excess * excess * self.lb
        }
    }
    fn plane_contact(&self, nx: f64, ny: f64, nz: f64) -> (f64, f64, f64) {
        let nxy = nx.hypot(ny);
        if nxy == 0.0 {
            return (0.0, 0.0, 0.0);
        }
        // Out to the torus' core circle uphill, then along the normal down to the surface.
        let k = self.a / nxy + self.c;
        (-k * nx, -k * ny, self.c * (1.0 - nz))
    }
    fn edge_constant(&self, _m: f64) -> f64 {
        0.0
    }
    fn edge_contact(&self, m: f64, _c: f64, d2: f64, _s2: f64, lo: f64, hi: f64) -> (f64, f64) {
        let w = self.torus_argmax(m, d2, lo, hi);
        (w, self.height((d2 + w * w).sqrt().min(self.r)))
    }
}

impl BullProfile {
    fn torus_argmax(&self, m: f64, d2: f64, lo: f64, hi: f64) -> f64 {
        // g(w) = m·w - h(ρ(w)) is concave; find where g'(w) = m - h'(ρ)·w/ρ crosses zero.
        let g1 = |w: f64| -> f64 {
            let rho = (d2 + w * w).sqrt();
            if rho == 0.0 {
                return m;
            }
            let (h1, _) = self.derivatives(rho);
            m - h1 * w / rho
        };
        if m == 0.0 {
            // Flat bottom in reach: the peak is the plateau over it (g = 0 there).
            return 0.0f64.clamp(lo, hi);
        }
        if g1(lo) <= 0.0 {
            return lo;
        }
        if g1(hi) >= 0.0 {
            return hi;
        }
        let (mut a, mut b) = (lo, hi);
        // Start from where the edge would touch with the axis right under it (d = 0).
        let rho0 = self.a + self.c * m.abs() / (1.0 + m * m).sqrt();
        let mut w = (rho0 * rho0 - d2).max(0.0).sqrt().copysign(m).clamp(a, b);
        for _ in 0..100 {
            let rho = (d2 + w * w).sqrt();
            let (h1, h2) = if rho > 0.0 {
                self.derivatives(rho)
            } else {
                (0.0, 0.0)
            };
            let gv = if rho > 0.0 { m - h1 * w / rho } else { m };
            if gv > 0.0 {
                a = w;
            } else {
                b = w;
            }
            // g''(w) = -(h''·(w/ρ)² + h'·d²/ρ³)
            let gd = if rho > 0.0 {
                let wr = w / rho;
                -(h2 * wr * wr + h1 * d2 / (rho * rho * rho))
            } else {
                0.0
            };
            let mut next = if gd < 0.0 { w - gv / gd } else { f64::NAN };
            if !(next > a && next < b) {
                next = 0.5 * (a + b);
            }
            let done = (next - w).abs() <= 1e-13 * (1.0 + w.abs()) || b - a <= 1e-13;
            w = next;
            if done {
                break;
            }
        }
        w
    }
}

#[derive(Clone, Copy, Debug)]
pub struct VBitProfile {
    r: f64,
    /// Cone slope: height gained per unit of radius (cot of the half angle).
    k: f64,
    /// k/R, a hair small, for `height_lower_bound`.
    lb: f64,
}

impl Shape for VBitProfile {
    fn radius(&self) -> f64 {
        self.r
    }
    fn height(&self, rho: f64) -> f64 {
        self.k * rho
    }
    fn height_lower_bound(&self, rho2: f64) -> f64 {
        // kρ ≥ kρ²/R for ρ ≤ R.
        rho2 * self.lb
    }
    fn plane_contact(&self, nx: f64, ny: f64, nz: f64) -> (f64, f64, f64) {
        let nxy = nx.hypot(ny);
        // A plane steeper than the cone's flank touches the rim uphill, not the tip; this is
        // the case a well-known library gets wrong.
        if nxy > self.k * nz {
            (-self.r * nx / nxy, -self.r * ny / nxy, self.k * self.r)
        } else {
            (0.0, 0.0, 0.0)
        }
    }
    fn edge_constant(&self, m: f64) -> f64 {
        if m.abs() < self.k {
            1.0 / (self.k * self.k - m * m).sqrt()
        } else {
            0.0
        }
    }
    fn surely_at_least(&self, rho2: f64, h: f64) -> bool {
        // kρ ≥ h  ⇔  k²ρ² ≥ h², for h ≥ 0.
        h <= 0.0 || self.k * self.k * rho2 > h * h * (1.0 + 1e-9)
    }
    fn edge_contact(&self, m: f64, c: f64, d2: f64, _s2: f64, lo: f64, hi: f64) -> (f64, f64) {
        let w = if m.abs() < self.k {
            // m = k·w/ρ  ⇒  w = d·m / sqrt(k² - m²)
            (d2.sqrt() * m * c).clamp(lo, hi)
        } else {
            linear_argmax(m, lo, hi)
        };
        (w, self.k * (d2 + w * w).sqrt().min(self.r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_specs() {
        for s in ["flat:6", "ball:3", "bull:6:1", "vbit:10:90"] {
            let c: Cutter = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        // Which error a spec gives.
        let refused = |s: &str| match s.parse::<Cutter>() {
            Err(CutterError::Syntax(_)) => "syntax",
            Err(CutterError::Diameter(_)) => "diameter",
            Err(CutterError::CornerRadius { .. }) => "corner radius",
            Err(CutterError::Angle(_)) => "angle",
            other => panic!("{s}: {other:?}"),
        };
        for (s, why) in [
            ("ball", "syntax"),
            ("cone:3", "syntax"),
            ("ball:-3", "diameter"),
            ("ball:nan", "diameter"),
            ("bull:6:3", "corner radius"),
            ("vbit:6:180", "angle"),
        ] {
            assert_eq!(refused(s), why, "{s}");
        }
    }

    #[test]
    fn profile_heights() {
        let ball: Cutter = "ball:4".parse().unwrap();
        assert_eq!(ball.height_at(0.0), 0.0);
        assert_eq!(ball.height_at(2.0), 2.0);
        let bull: Cutter = "bull:6:1".parse().unwrap();
        assert_eq!(bull.height_at(1.5), 0.0);
        assert_eq!(bull.height_at(3.0), 1.0);
        let v: Cutter = "vbit:10:90".parse().unwrap();
        assert!((v.height_at(5.0) - 5.0).abs() < 1e-12);
    }

    /// Brute-force maximum of m·w - h(ρ) for checking the closed forms.
    fn brute(p: &impl Shape, m: f64, d2: f64, lo: f64, hi: f64) -> f64 {
        let n = 200_000;
        (0..=n)
            .map(|i| {
                let w = lo + (hi - lo) * i as f64 / n as f64;
                m * w - p.height((d2 + w * w).sqrt())
            })
            .fold(f64::NEG_INFINITY, f64::max)
    }

    #[test]
    fn edge_argmax_matches_brute_force() {
        let cutters = [
            "flat:6",
            "ball:6",
            "bull:6:1",
            "bull:6:2.5",
            "vbit:6:60",
            "vbit:6:120",
        ];
        for spec in cutters {
            let c: Cutter = spec.parse().unwrap();
            with_shape!(c.profile(), p => {
                for &m in &[-7.0, -1.0, -0.3, 0.0, 0.2, 0.9, 3.0, 40.0] {
                    for &d in &[0.0, 0.5, 1.9, 2.5, 2.99] {
                        let s = (9.0f64 - d * d).sqrt();
                        for &(lo, hi) in &[(-s, s), (-s, 0.1), (0.3, s), (-1.0, 1.0)] {
                            let (lo, hi) = (lo.max(-s), hi.min(s));
                            if lo > hi {
                                continue;
                            }
                            let w = p.edge_argmax(m, d * d, lo, hi);
                            let (w2, h2) = p.edge_contact(m, p.edge_constant(m), d * d, 9.0 - d * d, lo, hi);
                            assert_eq!(w, w2);
                            assert!((h2 - p.height((d * d + w * w).sqrt())).abs() < 1e-12, "{spec} h");
                            assert!(w >= lo && w <= hi, "{spec} m={m} d={d}");
                            let got = m * w - p.height((d * d + w * w).sqrt());
                            let want = brute(&p, m, d * d, lo, hi);
                            assert!(got >= want - 1e-9, "{spec} m={m} d={d} [{lo},{hi}] got {got} want {want}");
                        }
                    }
                }
            });
        }
    }
}
