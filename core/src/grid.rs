//! The raster grid (ARCHITECTURE.md §3.3): the lines and points every raster job, the
//! `drop` command and the waterline's fibers are computed on.

use crate::drop::Axis;
use crate::error::JobError;
use crate::geom::{Point3, Rect};
use serde::{Deserialize, Serialize};

/// Largest grid a job may ask for: 8 bytes a point must fit in memory.
pub const MAX_POINTS: u64 = 1_000_000_000;

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
