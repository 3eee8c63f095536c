//! The raster grid (ARCHITECTURE.md §3.3): the lines and points every raster job, the
//! `drop` command and the waterline's fibers are computed on.

use crate::drop::Axis;
use crate::error::JobError;
use crate::geom::{Point3, Rect};
use serde::{Deserialize, Serialize};

/// Largest grid a job may ask for: 8 bytes a point must fit in memory.
pub const MAX_POINTS: u64 = 1_000_000_000;

/// Most points one line of a grid may have: 2^20 (a 105 m line at 0.1 mm, 10 m at 0.01 mm:
/// longer than any machine's travel).
///
/// A chunk is made of whole lines (ARCHITECTURE.md §2), so [`MAX_POINTS`] alone would let a
/// grid of one line of a billion points through: a single chunk, 8 GB for whichever worker
/// takes it — on every pool member it is handed to, from a spec that looks valid. With this
/// bound a chunk never holds more than 2^20 points (lines shorter than a chunk, 32 768
/// points, are grouped into chunks of fewer than 65 536), so a chunk's heights take at most
/// 8 MiB and a raster chunk's polylines, at one point per sample, 24 MiB: within the pool's
/// largest result (`millpond_net::wire::MAX_RESULT`, 64 MiB; a test there checks it), which a
/// larger chunk would exceed, every delivery of it closing its link as a violation.
pub const MAX_POINTS_PER_LINE: u64 = 1 << 20;

/// A raster grid (ARCHITECTURE.md §3.3): line `j` at `min + j·step` across, point `i` at
/// `min + i·sampling` along, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Axis the lines run along.
    pub axis: Axis,
    pub bounds: Rect,
    /// Distance between lines (stepover), mm.
    pub step: f64,
    /// Distance between points along a line, mm.
    pub sampling: f64,
}

impl Grid {
    /// (along_min, along_max, across_min, across_max) for this grid's axis.
    pub(crate) fn frame(&self) -> (f64, f64, f64, f64) {
        let b = &self.bounds;
        match self.axis {
            Axis::X => (b.xmin, b.xmax, b.ymin, b.ymax),
            Axis::Y => (b.ymin, b.ymax, b.xmin, b.xmax),
        }
    }

    pub fn lines(&self) -> usize {
        let (_, _, c0, c1) = self.frame();
        ((c1 - c0) / self.step + 1e-9).floor() as usize + 1
    }

    pub fn points_per_line(&self) -> usize {
        let (a0, a1, _, _) = self.frame();
        ((a1 - a0) / self.sampling + 1e-9).floor() as usize + 1
    }

    pub fn points(&self) -> u64 {
        self.lines() as u64 * self.points_per_line() as u64
    }

    /// Coordinate across the lines of line `j`.
    pub fn across(&self, j: usize) -> f64 {
        let (_, _, c0, _) = self.frame();
        c0 + j as f64 * self.step
    }

    /// Coordinate along the line of point `i`.
    pub fn along(&self, i: usize) -> f64 {
        let (a0, _, _, _) = self.frame();
        a0 + i as f64 * self.sampling
    }

    /// Model-space point of line `j`, point `i`, at height `z`.
    pub fn point(&self, j: usize, i: usize, z: f64) -> Point3 {
        self.on_line(j, self.along(i), z)
    }

    /// Model-space point of line `j` at coordinate `u` along it (anywhere, not only at a
    /// sample), at height `z`.
    pub fn on_line(&self, j: usize, u: f64, z: f64) -> Point3 {
        let v = self.across(j);
        match self.axis {
            Axis::X => Point3::new(u, v, z),
            Axis::Y => Point3::new(v, u, z),
        }
    }

    pub fn validate(&self) -> Result<(), JobError> {
        if !self.bounds.is_valid() {
            return Err(JobError::Invalid(format!(
                "bounds must be finite with min ≤ max, got x {}..{}, y {}..{}",
                self.bounds.xmin, self.bounds.xmax, self.bounds.ymin, self.bounds.ymax
            )));
        }
        positive("step", self.step)?;
        positive("sampling", self.sampling)?;
        let (a0, a1, c0, c1) = self.frame();
        let lines = (c1 - c0) / self.step + 1.0;
        let per_line = (a1 - a0) / self.sampling + 1.0;
        let points = lines * per_line;
        if points.is_nan() || points > MAX_POINTS as f64 {
            return Err(JobError::Invalid(format!(
                "the grid would have {:.3e} points; the limit is {MAX_POINTS:.0e} — use a larger step or sampling",
                lines * per_line
            )));
        }
        if per_line > MAX_POINTS_PER_LINE as f64 {
            return Err(JobError::Invalid(format!(
                "a line of the grid would have {per_line:.3e} points; the limit is \
                 {MAX_POINTS_PER_LINE} (2^20) — use a larger sampling or smaller bounds"
            )));
        }
        Ok(())
    }
}

fn positive(name: &str, v: f64) -> Result<(), JobError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(JobError::Invalid(format!(
            "{name} must be a positive number of millimetres, got {v}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(bounds: Rect, step: f64, sampling: f64) -> Grid {
        Grid {
            axis: Axis::X,
            bounds,
            step,
            sampling,
        }
    }

    /// One line of a billion points is within the grid's total but not a line's: refused,
    /// and so is one just over the bound, while one just within it passes (either axis).
    #[test]
    fn a_line_longer_than_its_bound_is_refused() {
        let billion = grid(Rect::new(0.0, 9.999e7, 0.0, 0.0), 1.0, 0.1);
        assert!(billion.points() <= MAX_POINTS);
        let e = billion
            .validate()
            .expect_err("a one-line grid of 1e9 points");
        assert!(e.to_string().contains("a line of the grid"), "{e}");
        let most = (MAX_POINTS_PER_LINE - 1) as f64;
        let within = grid(Rect::new(0.0, most * 0.5, 0.0, 10.0), 1.0, 0.5);
        assert_eq!(within.points_per_line() as u64, MAX_POINTS_PER_LINE);
        within.validate().expect("a line of 2^20 points");
        let over = grid(Rect::new(0.0, (most + 1.0) * 0.5, 0.0, 10.0), 1.0, 0.5);
        assert_eq!(over.points_per_line() as u64, MAX_POINTS_PER_LINE + 1);
        assert!(over.validate().is_err());
        let along_y = Grid {
            axis: Axis::Y,
            bounds: Rect::new(0.0, 10.0, 0.0, (most + 1.0) * 0.5),
            ..over
        };
        assert!(along_y.validate().is_err());
    }
}
