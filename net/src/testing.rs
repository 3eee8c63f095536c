//! What the crate's unit tests share.

use millpond_core::job::{DropSpec, Grid, Operation};
use millpond_core::mesh::MeshHash;
use millpond_core::{Axis, Cutter, JobSpec, Rect};

/// A drop job on `mesh` with the 3 mm ball the tests use: lines along X `step` apart over
/// `bounds`, sampled every `sampling`, the floor at 0.
pub(crate) fn ball_drop(mesh: MeshHash, bounds: Rect, step: f64, sampling: f64) -> JobSpec {
    let grid = Grid {
        axis: Axis::X,
        bounds,
        step,
        sampling,
    };
    JobSpec {
        mesh,
        cutter: Cutter::Ball { diameter: 3.0 },
        operation: Operation::Drop(DropSpec { grid, floor: 0.0 }),
    }
}
