//! Small geometry value types. Millimetres, Z up (ARCHITECTURE.md §3.1).
//!
//! Deliberately minimal: the engine's hot loops work on plain `f64` fields, and a
//! linear-algebra crate would add build time without removing any code that matters.

use serde::{Deserialize, Serialize};
use std::ops::{Add, Mul, Sub};

/// A point (or vector) in model space, millimetres.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Point3 {
    pub const fn new(x: f64, y: f64, z: f64) -> Self {
        Self { x, y, z }
    }

    pub fn dot(self, o: Self) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn cross(self, o: Self) -> Self {
        Self::new(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }

    pub fn length(self) -> f64 {
        self.dot(self).sqrt()
    }

    pub fn is_finite(self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.z.is_finite()
    }

    /// Horizontal (XY) distance to another point.
    pub fn distance_xy(self, o: Self) -> f64 {
        (self.x - o.x).hypot(self.y - o.y)
    }
}

impl Add for Point3 {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}

impl Sub for Point3 {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}

impl Mul<f64> for Point3 {
    type Output = Self;
    fn mul(self, s: f64) -> Self {
        Self::new(self.x * s, self.y * s, self.z * s)
    }
}

/// An axis-aligned box.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aabb {
    pub min: Point3,
    pub max: Point3,
}

impl Aabb {
    /// The empty box: `extend` with any point gives that point's box.
    pub const EMPTY: Self = Self {
        min: Point3::new(f64::INFINITY, f64::INFINITY, f64::INFINITY),
        max: Point3::new(f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY),
    };

    pub fn extend(&mut self, p: Point3) {
        self.min.x = self.min.x.min(p.x);
        self.min.y = self.min.y.min(p.y);
        self.min.z = self.min.z.min(p.z);
        self.max.x = self.max.x.max(p.x);
        self.max.y = self.max.y.max(p.y);
        self.max.z = self.max.z.max(p.z);
    }

    pub fn is_empty(&self) -> bool {
        !(self.min.x <= self.max.x && self.min.y <= self.max.y && self.min.z <= self.max.z)
    }

    pub fn size(&self) -> Point3 {
        self.max - self.min
    }

    /// The box seen from above: its XY rectangle (raster bounds default to it).
    pub fn xy(&self) -> Rect {
        Rect::new(self.min.x, self.max.x, self.min.y, self.max.y)
    }
}

/// A rectangle in the XY plane, used for raster bounds and footprints.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub xmin: f64,
    pub xmax: f64,
    pub ymin: f64,
    pub ymax: f64,
}

impl Rect {
    pub fn new(xmin: f64, xmax: f64, ymin: f64, ymax: f64) -> Self {
        Self {
            xmin,
            xmax,
            ymin,
            ymax,
        }
    }

    /// Grown by `margin` on every side.
    pub fn grown(&self, margin: f64) -> Self {
        Self::new(
            self.xmin - margin,
            self.xmax + margin,
            self.ymin - margin,
            self.ymax + margin,
        )
    }

    pub fn is_valid(&self) -> bool {
        [self.xmin, self.xmax, self.ymin, self.ymax]
            .iter()
            .all(|v| v.is_finite())
            && self.xmin <= self.xmax
            && self.ymin <= self.ymax
    }
}

/// One triangle of a mesh, vertices in file order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Triangle {
    pub v: [Point3; 3],
}

impl Triangle {
    pub fn new(a: Point3, b: Point3, c: Point3) -> Self {
        Self { v: [a, b, c] }
    }

    /// Unnormalised normal by the right-hand rule on the vertex order. STL's stored normal is
    /// never used: exporters get it wrong often enough that the vertex order is the only truth.
    pub fn cross(&self) -> Point3 {
        (self.v[1] - self.v[0]).cross(self.v[2] - self.v[0])
    }

    /// Unit normal, or `None` for a degenerate triangle.
    pub fn normal(&self) -> Option<Point3> {
        let n = self.cross();
        let len = n.length();
        (len > 0.0 && len.is_finite()).then(|| n * (1.0 / len))
    }

    /// True when the triangle has no usable area: its normal cannot be computed reliably.
    ///
    /// The threshold is relative to the longest edge so that it means the same at any scale:
    /// twice the area must exceed 1e-12 of the longest edge squared (an angle of ~1e-12 rad).
    pub fn is_degenerate(&self) -> bool {
        let e0 = self.v[1] - self.v[0];
        let e1 = self.v[2] - self.v[1];
        let e2 = self.v[0] - self.v[2];
        let longest = e0.dot(e0).max(e1.dot(e1)).max(e2.dot(e2));
        let twice_area = e0.cross(e2).length();
        !(longest > 0.0 && twice_area > 1e-12 * longest)
    }

    pub fn zmax(&self) -> f64 {
        self.v[0].z.max(self.v[1].z).max(self.v[2].z)
    }

    pub fn zmin(&self) -> f64 {
        self.v[0].z.min(self.v[1].z).min(self.v[2].z)
    }
}

/// The larger of two numbers that are never NaN. `f64::max` must return the other argument
/// when one is NaN, which costs several instructions; this is one `maxsd`. The contact
/// loops call it tens of times per tested triangle, on finite or infinite values only.
#[inline(always)]
pub(crate) fn max(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// The smaller of two numbers that are never NaN; see [`max`].
#[inline(always)]
pub(crate) fn min(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// How far `x` lies outside `[lo, hi]` (0 inside); never NaN for non-NaN inputs.
#[inline(always)]
pub(crate) fn gap(x: f64, lo: f64, hi: f64) -> f64 {
    max(max(lo - x, x - hi), 0.0)
}
