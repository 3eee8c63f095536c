//! Placing a part on the machine: what one STL unit is, and the steps (to the origin,
//! centred, rotated, mirrored) that put it where the machinist wants it. The window and the
//! command line place parts with the same code; a job keeps the steps, not the moved mesh,
//! so the placed part is always rebuilt from the file (no rounding piles up).

use crate::geom::{Aabb, Point3};
use crate::mesh::Mesh;
use crate::stl::StlError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What one STL unit is (STL files carry none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Units {
    #[default]
    Millimetres,
    Centimetres,
    /// Scans and architectural exports.
    Metres,
    /// STL files from imperial CAD: every coordinate is scaled by 25.4.
    Inches,
}

impl Units {
    pub const ALL: [Units; 4] = [
        Units::Millimetres,
        Units::Centimetres,
        Units::Metres,
        Units::Inches,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Units::Millimetres => "mm",
            Units::Centimetres => "cm",
            Units::Metres => "m",
            Units::Inches => "inch",
        }
    }

    /// Millimetres in one unit.
    pub fn scale(self) -> f64 {
        match self {
            Units::Millimetres => 1.0,
            Units::Centimetres => 10.0,
            Units::Metres => 1000.0,
            Units::Inches => 25.4,
        }
    }
}

/// A machine axis, for rotations and mirrors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Axis3 {
    X,
    Y,
    Z,
}

impl Axis3 {
    pub const ALL: [Axis3; 3] = [Axis3::X, Axis3::Y, Axis3::Z];

    pub fn label(self) -> &'static str {
        match self {
            Axis3::X => "X",
            Axis3::Y => "Y",
            Axis3::Z => "Z",
        }
    }
}

/// The largest and smallest free scale factor a placement step takes: beyond them a part is
/// no longer a workshop part whatever its file's units were.
pub const SCALE_RANGE: (f64, f64) = (1e-4, 1e4);

/// `f` as a scale step's factor, or why not (for every entry point's message).
pub fn check_scale(f: f64) -> Result<f64, String> {
    let (lo, hi) = SCALE_RANGE;
    if (lo..=hi).contains(&f) {
        Ok(f)
    } else {
        Err(format!(
            "a scale factor of {f} is out of range ({lo} to {hi})"
        ))
    }
}

/// One step of placing the part on the machine.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Placement {
    /// The box's lowest corner to X0 Y0 Z0.
    MoveToOrigin,
    /// The box's XY centre to X0 Y0, its bottom to Z0.
    Center,
    /// 90° counter-clockwise about an axis (right-hand rule).
    Rotate(Axis3),
    /// Mirror across the plane normal to an axis.
    Mirror(Axis3),
    /// Every coordinate times a factor, about the origin: a file in units that are none of
    /// [`Units`], or a part to be cut larger or smaller. Within [`SCALE_RANGE`].
    Scale(f64),
}

impl Placement {
    pub fn apply(self, mesh: &Mesh) -> Result<Mesh, StlError> {
        let b = mesh.bounds();
        match self {
            Placement::MoveToOrigin => mesh.transformed(|p| p - b.min, false),
            Placement::Center => {
                let c = Point3::new(
                    (b.min.x + b.max.x) / 2.0,
                    (b.min.y + b.max.y) / 2.0,
                    b.min.z,
                );
                mesh.transformed(|p| p - c, false)
            }
            Placement::Rotate(Axis3::X) => mesh.transformed(|p| Point3::new(p.x, -p.z, p.y), false),
            Placement::Rotate(Axis3::Y) => mesh.transformed(|p| Point3::new(p.z, p.y, -p.x), false),
            Placement::Rotate(Axis3::Z) => mesh.transformed(|p| Point3::new(-p.y, p.x, p.z), false),
            Placement::Mirror(Axis3::X) => mesh.transformed(|p| Point3::new(-p.x, p.y, p.z), true),
            Placement::Mirror(Axis3::Y) => mesh.transformed(|p| Point3::new(p.x, -p.y, p.z), true),
            Placement::Mirror(Axis3::Z) => mesh.transformed(|p| Point3::new(p.x, p.y, -p.z), true),
            // Entry points (job files, `--scale`, the window) keep `f` within SCALE_RANGE.
            Placement::Scale(f) => mesh.transformed(|p| p * f, false),
        }
    }
}

/// The part as toolpaths see it: `original` (as read) scaled by its units, then each
/// placement step in order.
pub fn place(
    original: &Arc<Mesh>,
    units: Units,
    steps: &[Placement],
) -> Result<Arc<Mesh>, StlError> {
    let mut mesh = if units == Units::Millimetres {
        None
    } else {
        let s = units.scale();
        Some(original.transformed(|p| p * s, false)?)
    };
    for step in steps {
        let next = step.apply(mesh.as_ref().unwrap_or(original))?;
        mesh = Some(next);
    }
    Ok(mesh.map_or_else(|| original.clone(), Arc::new))
}

/// Largest part a 3-axis machine in a workshop plausibly cuts, mm.
const LARGEST_PLAUSIBLE: f64 = 5000.0;
/// Below this a part is more often a file in other units than a real part, mm (a hint, not
/// an error: tiny parts exist).
const SMALLEST_PLAUSIBLE: f64 = 10.0;

/// A note when a part's size says its units are probably wrong — "0.16 mm across: is this
/// in metres?" — naming the units that would give it a workshop size. `None` when the size
/// is plausible.
pub fn size_hint(bounds: Aabb, units: Units) -> Option<String> {
    let across = (bounds.max.x - bounds.min.x)
        .max(bounds.max.y - bounds.min.y)
        .max(bounds.max.z - bounds.min.z);
    if !across.is_finite() {
        return None;
    }
    let file_units = across / units.scale();
    let plausible = |u: Units| {
        let mm = file_units * u.scale();
        (10.0..=2000.0).contains(&mm).then_some((u, mm))
    };
    if across < SMALLEST_PLAUSIBLE {
        let better = [Units::Metres, Units::Inches, Units::Centimetres]
            .into_iter()
            .find_map(plausible);
        Some(match better {
            Some((u, mm)) => format!(
                "the part is {across:.3} mm across: is the file in {} ({mm:.0} mm across)?",
                long_name(u)
            ),
            None => format!("the part is {across:.3} mm across: check the file's units"),
        })
    } else if across > LARGEST_PLAUSIBLE {
        Some(format!(
            "the part is {across:.0} mm across, larger than a workshop machine: check the \
             file's units"
        ))
    } else {
        None
    }
}

fn long_name(u: Units) -> &'static str {
    match u {
        Units::Millimetres => "millimetres",
        Units::Centimetres => "centimetres",
        Units::Metres => "metres",
        Units::Inches => "inches",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn box_of(x: f64, y: f64, z: f64) -> Aabb {
        Aabb {
            min: Point3::new(0.0, 0.0, 0.0),
            max: Point3::new(x, y, z),
        }
    }

    #[test]
    fn implausible_sizes_get_a_hint_naming_likely_units() {
        // A scan in metres: 0.16 across.
        let h = size_hint(box_of(0.16, 0.1, 0.05), Units::Millimetres).unwrap();
        assert!(
            h.contains("0.160 mm across") && h.contains("metres (160 mm"),
            "{h}"
        );
        // Once read as metres, it is fine.
        assert_eq!(size_hint(box_of(160.0, 100.0, 50.0), Units::Metres), None);
        // An inch part read as millimetres: 5 mm across.
        let h = size_hint(box_of(5.0, 2.5, 1.4), Units::Millimetres).unwrap();
        assert!(h.contains("inches (127 mm"), "{h}");
        // An ordinary part says nothing.
        assert_eq!(
            size_hint(box_of(80.0, 60.0, 22.0), Units::Millimetres),
            None
        );
        assert!(
            size_hint(box_of(9000.0, 10.0, 10.0), Units::Millimetres)
                .unwrap()
                .contains("larger than a workshop machine")
        );
        assert_eq!(
            Units::Centimetres.scale() * 10.0,
            Units::Metres.scale() / 10.0
        );
    }
}
