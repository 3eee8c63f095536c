//! The orbit camera: a turntable around a target point with Z up, as machinists expect from CAM
//! and CAD views. Pure math (no GL), so orientation and framing are unit-tested.

use super::ViewPreset;
use millpond_core::Aabb;
use three_d::{InnerSpace, Vec3, vec3};

/// Vertical field of view. Narrow enough that a part does not look distorted, wide enough that
/// orbiting close to it still shows some context.
const FOV_Y: f32 = 0.6; // radians, about 34°

/// Orbit speed: radians per point of mouse drag (a full turn is a drag of about 900 points).
const ORBIT_PER_POINT: f32 = 0.007;

/// A turntable camera. `yaw` turns around +Z, `pitch` lifts the eye above the XY plane; the eye
/// sits at `target + distance · dir(yaw, pitch)`. The screen's right vector depends only on the
/// yaw, so looking straight down (pitch = 90°, the Top view) is well defined: no gimbal flip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrbitCamera {
    pub target: Vec3,
    pub distance: f32,
    /// Radians; 0 puts the eye on +X, −90° on −Y.
    pub yaw: f32,
    /// Radians in [−90°, 90°]; 90° is straight above the target.
    pub pitch: f32,
    pub fov_y: f32,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        let mut c = Self {
            target: vec3(0.0, 0.0, 0.0),
            distance: 100.0,
            yaw: 0.0,
            pitch: 0.0,
            fov_y: FOV_Y,
        };
        c.preset(ViewPreset::Iso);
        c
    }
}

/// Everything the renderer needs to build its camera for one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CameraFrame {
    pub eye: Vec3,
    pub target: Vec3,
    pub up: Vec3,
    pub fov_y: f32,
    pub z_near: f32,
    pub z_far: f32,
}

impl OrbitCamera {
    /// Unit vector from the target to the eye.
    pub fn dir(&self) -> Vec3 {
        let (sy, cy) = self.yaw.sin_cos();
        let (sp, cp) = self.pitch.sin_cos();
        vec3(cp * cy, cp * sy, sp)
    }

    pub fn eye(&self) -> Vec3 {
        self.target + self.dir() * self.distance
    }

    /// The screen's right direction in world space (always horizontal).
    pub fn right(&self) -> Vec3 {
        let (sy, cy) = self.yaw.sin_cos();
        vec3(-sy, cy, 0.0)
    }

    /// The screen's up direction in world space.
    pub fn up(&self) -> Vec3 {
        self.dir().cross(self.right())
    }

    /// Top looks down −Z (X right, Y up); Front looks along +Y; Side looks along −X (from the
    /// right); Iso looks from (+1, −1, +1) towards the target.
    pub fn preset(&mut self, preset: ViewPreset) {
        use std::f32::consts::FRAC_PI_2;
        let (yaw, pitch) = match preset {
            ViewPreset::Top => (-FRAC_PI_2, FRAC_PI_2),
            ViewPreset::Front => (-FRAC_PI_2, 0.0),
            ViewPreset::Side => (0.0, 0.0),
            ViewPreset::Iso => (-std::f32::consts::FRAC_PI_4, (0.5f32).sqrt().atan()),
        };
        self.yaw = yaw;
        self.pitch = pitch;
    }

    /// Turntable orbit for a drag of `(dx, dy)` points: dragging right turns the part to the
    /// right, dragging down tips its top towards the viewer.
    pub fn orbit(&mut self, dx: f32, dy: f32) {
        use std::f32::consts::{FRAC_PI_2, TAU};
        self.yaw = (self.yaw - dx * ORBIT_PER_POINT).rem_euclid(TAU);
        self.pitch = (self.pitch + dy * ORBIT_PER_POINT).clamp(-FRAC_PI_2, FRAC_PI_2);
    }

    /// World units per point at the target's depth, for a view `view_height` points tall.
    fn world_per_point(&self, view_height: f32) -> f32 {
        2.0 * self.distance * (self.fov_y / 2.0).tan() / view_height.max(1.0)
    }

    /// Moves the view so that what is under the cursor follows a drag of `(dx, dy)` points.
    pub fn pan(&mut self, dx: f32, dy: f32, view_height: f32) {
        let k = self.world_per_point(view_height);
        self.target += (self.right() * -dx + self.up() * dy) * k;
    }

    /// Zooms by `factor` (< 1 moves closer) keeping the point under the cursor fixed on screen.
    /// `cursor` is in normalized device coordinates (−1..1, y up); `None` zooms to the centre.
    /// `scale` is the scene's size, which bounds how close or far the camera may get.
    pub fn zoom(&mut self, factor: f32, cursor: Option<(f32, f32)>, aspect: f32, scale: f32) {
        if !(factor.is_finite() && factor > 0.0) {
            return;
        }
        let scale = scale.max(1e-3);
        let new_distance = (self.distance * factor).clamp(scale * 1e-3, scale * 100.0);
        let factor = new_distance / self.distance;
        if let Some((x, y)) = cursor {
            let half_h = self.distance * (self.fov_y / 2.0).tan();
            let p = self.target + self.right() * (x * half_h * aspect) + self.up() * (y * half_h);
            self.target = p + (self.target - p) * factor;
        }
        self.distance = new_distance;
    }

    /// Frames `bounds` from the current direction: the box is centred and its eight corners fit
    /// inside the view (with a small margin), taking perspective into account.
    pub fn fit(&mut self, bounds: &Aabb, aspect: f32) {
        let Some((min, max)) = finite_box(bounds) else {
            return;
        };
        let center = (min + max) * 0.5;
        let (dir, right, up) = (self.dir(), self.right(), self.up());
        let tan_v = (self.fov_y / 2.0).tan();
        let tan_h = tan_v * aspect.max(1e-3);
        const MARGIN: f32 = 1.15;
        let mut distance = 0.0f32;
        for i in 0..8 {
            let c = vec3(
                if i & 1 == 0 { min.x } else { max.x },
                if i & 2 == 0 { min.y } else { max.y },
                if i & 4 == 0 { min.z } else { max.z },
            );
            let v = c - center;
            let depth = v.dot(dir);
            distance = distance
                .max(depth + MARGIN * v.dot(right).abs() / tan_h)
                .max(depth + MARGIN * v.dot(up).abs() / tan_v);
        }
        let radius = (max - min).magnitude() * 0.5;
        self.target = center;
        self.distance = distance.max(radius * 0.1).max(1e-3);
    }

    /// The camera for one frame, with near and far planes hugging `scene` so the depth buffer's
    /// precision is spent where the geometry is.
    pub fn frame(&self, scene: &Aabb) -> CameraFrame {
        let eye = self.eye();
        let (z_near, z_far) = match finite_box(scene) {
            Some((min, max)) => {
                let center = (min + max) * 0.5;
                let radius = ((max - min).magnitude() * 0.5).max(1e-3);
                let d = (eye - center).magnitude();
                let far = d + radius * 1.1;
                let near = (d - radius * 1.1).max(far / 5000.0);
                (near, far)
            }
            None => (self.distance / 1000.0, self.distance * 1000.0),
        };
        CameraFrame {
            eye,
            target: self.target,
            up: self.up(),
            fov_y: self.fov_y,
            z_near,
            z_far,
        }
    }
}

/// The box as f32 corners, or `None` when it is empty or not finite.
fn finite_box(b: &Aabb) -> Option<(Vec3, Vec3)> {
    if b.is_empty() || !(b.min.is_finite() && b.max.is_finite()) {
        return None;
    }
    let v = |p: millpond_core::Point3| vec3(p.x as f32, p.y as f32, p.z as f32);
    Some((v(b.min), v(b.max)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::Point3;

    fn close(a: Vec3, b: Vec3) -> bool {
        (a - b).magnitude() < 1e-5
    }

    #[test]
    fn presets_look_where_a_machinist_expects() {
        let mut c = OrbitCamera::default();
        c.preset(ViewPreset::Top);
        // Looking down −Z, X to the right, Y up on screen.
        assert!(close(-c.dir(), vec3(0.0, 0.0, -1.0)), "{:?}", c.dir());
        assert!(close(c.right(), vec3(1.0, 0.0, 0.0)), "{:?}", c.right());
        assert!(close(c.up(), vec3(0.0, 1.0, 0.0)), "{:?}", c.up());
        c.preset(ViewPreset::Front);
        assert!(close(-c.dir(), vec3(0.0, 1.0, 0.0)));
        assert!(close(c.right(), vec3(1.0, 0.0, 0.0)));
        assert!(close(c.up(), vec3(0.0, 0.0, 1.0)));
        c.preset(ViewPreset::Side);
        assert!(close(-c.dir(), vec3(-1.0, 0.0, 0.0)));
        assert!(close(c.up(), vec3(0.0, 0.0, 1.0)));
        c.preset(ViewPreset::Iso);
        let iso = vec3(1.0, -1.0, 1.0).normalize();
        assert!(close(c.dir(), iso), "{:?}", c.dir());
        assert!(c.up().z > 0.5, "Z stays up in the iso view");
    }

    #[test]
    fn orbit_keeps_distance_and_clamps_pitch() {
        let mut c = OrbitCamera::default();
        let d0 = (c.eye() - c.target).magnitude();
        c.orbit(123.0, -4000.0);
        assert!(((c.eye() - c.target).magnitude() - d0).abs() < 1e-3);
        assert!((c.pitch + std::f32::consts::FRAC_PI_2).abs() < 1e-6);
        assert!(c.up().magnitude() > 0.99, "up stays defined at the pole");
    }

    #[test]
    fn pan_moves_target_in_the_view_plane() {
        let mut c = OrbitCamera::default();
        let t0 = c.target;
        c.pan(10.0, -5.0, 500.0);
        let moved = c.target - t0;
        assert!(moved.magnitude() > 0.0);
        assert!(moved.dot(c.dir()).abs() < 1e-4, "pan never changes depth");
    }

    #[test]
    fn zoom_keeps_the_point_under_the_cursor() {
        let mut c = OrbitCamera::default();
        c.preset(ViewPreset::Top);
        c.distance = 100.0;
        let aspect = 1.5;
        let (x, y) = (0.5, -0.25);
        let under = |c: &OrbitCamera| {
            let h = c.distance * (c.fov_y / 2.0).tan();
            c.target + c.right() * (x * h * aspect) + c.up() * (y * h)
        };
        let before = under(&c);
        c.zoom(0.5, Some((x, y)), aspect, 100.0);
        assert!((c.distance - 50.0).abs() < 1e-4);
        assert!(close(under(&c), before), "{:?} vs {before:?}", under(&c));
    }

    #[test]
    fn fit_frames_every_corner() {
        let b = Aabb {
            min: Point3::new(-10.0, 5.0, 0.0),
            max: Point3::new(90.0, 45.0, 20.0),
        };
        for preset in [
            ViewPreset::Top,
            ViewPreset::Front,
            ViewPreset::Side,
            ViewPreset::Iso,
        ] {
            for aspect in [0.5f32, 1.0, 2.0] {
                let mut c = OrbitCamera::default();
                c.preset(preset);
                c.fit(&b, aspect);
                let f = c.frame(&b);
                let fwd = (f.target - f.eye).normalize();
                let (tan_v, tan_h) = ((f.fov_y / 2.0).tan(), (f.fov_y / 2.0).tan() * aspect);
                let mut widest = 0.0f32;
                for i in 0..8 {
                    let p = vec3(
                        if i & 1 == 0 { -10.0 } else { 90.0 },
                        if i & 2 == 0 { 5.0 } else { 45.0 },
                        if i & 4 == 0 { 0.0 } else { 20.0 },
                    );
                    let v = p - f.eye;
                    let depth = v.dot(fwd);
                    assert!(depth > f.z_near && depth < f.z_far, "{preset:?}: depth");
                    let sx = v.dot(c.right()).abs() / (depth * tan_h);
                    let sy = v.dot(c.up()).abs() / (depth * tan_v);
                    assert!(
                        sx <= 1.0 && sy <= 1.0,
                        "{preset:?} {aspect}: corner off screen"
                    );
                    widest = widest.max(sx).max(sy);
                }
                assert!(
                    widest > 0.85,
                    "{preset:?} {aspect}: fit is loose ({widest})"
                );
            }
        }
    }
}
