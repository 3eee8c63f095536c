//! Machining time as a controller would run the program: a machine profile and a
//! trapezoidal look-ahead planner after GRBL's (`planner.c` of GRBL 1.1).
//!
//! Length ÷ feed assumes the tool is at full feed from the first millimetre of every move.
//! A hobby machine accelerates at a few hundred mm/s² and slows for every corner, so a fine
//! raster of short segments takes several times that (GRBL issue #893). The model here:
//!
//! * **Per block** (one straight move): the nominal speed is the programmed feed (the rapid
//!   rate for G0), capped by each axis' limit scaled by the move's direction cosines
//!   (`min_k max_k / |u_k|`); the acceleration is `min_k a_k / |u_k|`.
//! * **Per junction** (where one move meets the next): GRBL's junction deviation model. The
//!   junction speed is `v² = a·δ·sin(θ/2) / (1 − sin(θ/2))`, θ the angle between the reversed
//!   incoming direction and the outgoing one (θ = π runs straight on, θ = 0 reverses: a
//!   stop), `a` the acceleration along the change of direction, δ the junction deviation;
//!   never faster than either block's nominal speed.
//! * **Stops**: the program starts and ends at rest, and so does every [`Planner::stop`]
//!   (spindle start, tool change, dwell: GRBL empties its buffer for each).
//! * **Look-ahead**: a backward pass (each block's entry no faster than it can still
//!   decelerate to what follows) and a forward pass (no faster than it can accelerate to from
//!   what precedes), then per block a trapezoid — accelerate, cruise, decelerate — or a
//!   triangle where the block is too short to reach its nominal speed.
//!
//! GRBL plans over a buffer of 15–16 blocks and assumes a stop after the last one it holds;
//! on very short segments that makes it slower than full look-ahead. This planner looks as
//! far ahead as can matter — until the path ahead is long enough to stop from the highest
//! speed in the buffer — so its speeds are those of unlimited look-ahead, a lower bound on a
//! real controller's time for the same model (see [`Planner`] for why the window is exact).
//!
//! Arcs are planned as the straight moves they were fitted to (`crate::arcs`: within a micron
//! of them), which is how GRBL runs them too (it cuts arcs into segments of `$12`, 2 µm).
//! Not modelled: jerk limits (GRBL has none; LinuxCNC's planner
//! is close to this one with its path tolerance `G64 P` as δ), spindle acceleration, and the
//! operator's time at a tool change.

use crate::geom::Point3;
use crate::toolpath::MoveKind;
use serde::{Deserialize, Serialize};
use std::ops::{Add, AddAssign};

/// What a machine can do, for time estimates. Axes in the order X, Y, Z.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineProfile {
    /// Fastest feed each axis allows on a G1 move, mm/min (GRBL's `$110..$112` cap feeds and
    /// rapids alike; here they may differ).
    pub max_feed: [f64; 3],
    /// Rapid rate of each axis, mm/min (G0).
    pub rapid_rate: [f64; 3],
    /// Acceleration of each axis, mm/s² (GRBL's `$120..$122`).
    pub acceleration: [f64; 3],
    /// Junction deviation, mm (GRBL's `$11`): how far the tool may stray from a corner at
    /// the junction speed; larger is faster through corners.
    pub junction_deviation: f64,
}

impl Default for MachineProfile {
    fn default() -> Self {
        Self::hobby()
    }
}

impl MachineProfile {
    /// A hobby router on GRBL (Shapeoko- or X-Carve-like): 5 m/min rapids in X and Y and
    /// 1.5 m/min in Z, 500 mm/s² in X and Y and 200 mm/s² in Z (a leadscrew Z), GRBL's
    /// default junction deviation of 0.01 mm. Feeds are capped at the rapid rates, as GRBL
    /// does.
    pub fn hobby() -> Self {
        Self::feeds_capped_at_rapids([5000.0, 5000.0, 1500.0], [500.0, 500.0, 200.0], 0.01)
    }

    /// A stiffer router on LinuxCNC (ball screws, servos): 15 m/min rapids in X and Y and
    /// 5 m/min in Z, 2000 mm/s² in X and Y and 1000 mm/s² in Z, 0.005 mm tolerance (the
    /// programs' `G64 P0.005`).
    pub fn stiff() -> Self {
        Self::feeds_capped_at_rapids([15000.0, 15000.0, 5000.0], [2000.0, 2000.0, 1000.0], 0.005)
    }

    /// A profile whose feeds are capped at its rapid rates, as both presets' are.
    fn feeds_capped_at_rapids(
        rapid_rate: [f64; 3],
        acceleration: [f64; 3],
        junction_deviation: f64,
    ) -> Self {
        Self {
            max_feed: rapid_rate,
            rapid_rate,
            acceleration,
            junction_deviation,
        }
    }

    /// Every figure positive and finite.
    pub fn validate(&self) -> Result<(), String> {
        let axes = ["X", "Y", "Z"];
        for (what, v) in [
            ("max feed", self.max_feed),
            ("rapid rate", self.rapid_rate),
            ("acceleration", self.acceleration),
        ] {
            for (axis, x) in axes.iter().zip(v) {
                if !(x.is_finite() && x > 0.0) {
                    return Err(format!("{axis} {what} must be a positive number, got {x}"));
                }
            }
        }
        let d = self.junction_deviation;
        if !(d.is_finite() && d > 0.0) {
            return Err(format!(
                "junction deviation must be a positive number, got {d}"
            ));
        }
        Ok(())
    }

    /// One line for comments and labels: "5000/5000/1500 mm/min rapids, 500/500/200 mm/s2,
    /// junction deviation 0.01 mm" (ASCII only).
    pub fn describe(&self) -> String {
        let f = |v: [f64; 3]| format!("{}/{}/{}", v[0], v[1], v[2]);
        format!(
            "{} mm/min rapids, {} mm/s2, junction deviation {} mm",
            f(self.rapid_rate),
            f(self.acceleration),
            self.junction_deviation
        )
    }
}

/// Seconds a program (or part of one) takes, by kind of motion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeEstimate {
    /// Everything: the sum of the four below.
    pub total_s: f64,
    /// Cutting moves (G1 at the feed).
    pub cutting_s: f64,
    /// Plunges (G1 at the plunge feed).
    pub plunge_s: f64,
    /// Rapids (G0).
    pub rapid_s: f64,
    /// Dwells (`G4`).
    pub dwell_s: f64,
    /// What the same moves take at their nominal speeds with no acceleration at all: length
    /// ÷ feed, with the axis limits. Never more than `total_s`.
    pub full_speed_s: f64,
    /// Moves planned (zero-length moves are dropped, as GRBL drops them).
    pub blocks: usize,
}

impl Add for TimeEstimate {
    type Output = Self;
    fn add(mut self, o: Self) -> Self {
        self += o;
        self
    }
}

impl AddAssign for TimeEstimate {
    fn add_assign(&mut self, o: Self) {
        self.total_s += o.total_s;
        self.cutting_s += o.cutting_s;
        self.plunge_s += o.plunge_s;
        self.rapid_s += o.rapid_s;
        self.dwell_s += o.dwell_s;
        self.full_speed_s += o.full_speed_s;
        self.blocks += o.blocks;
    }
}

impl std::iter::Sum for TimeEstimate {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), Add::add)
    }
}

/// One planned move. Speeds are squared, in (mm/s)²; as GRBL keeps them.
#[derive(Clone, Copy, Debug)]
struct Block {
    kind: MoveKind,
    length: f64,
    /// mm/s² along the move.
    accel: f64,
    nominal_sq: f64,
    /// The junction limit at the block's start (0 after a stop).
    max_entry_sq: f64,
    /// The backward pass's entry speed: no faster than the block can still slow down to
    /// what follows.
    entry_sq: f64,
}

/// Streams moves and plans them as the controller would.
///
/// Memory is a window of blocks, not the program: a block's speeds are final once the path
/// after it, in the window, is long enough to stop from the fastest nominal speed `V` in the
/// window (`Σ 2·aᵢ·dᵢ ≥ V²`). The backward pass assumes a stop at the window's end; a block
/// that far from the end can stop within the window from any speed it may have, so the
/// assumed stop limits it no more than the real future would. Each pass plans the window and
/// hands over the final blocks; the window doubles while fewer than half of it are final
/// (fine segments at a high feed), so every block is planned at most a few times.
#[derive(Clone, Debug)]
pub struct Planner {
    profile: MachineProfile,
    at: Point3,
    /// The last block's unit direction and nominal speed², `None` after a stop.
    prev: Option<([f64; 3], f64)>,
    window: Vec<Block>,
    /// How many blocks the window holds before it is planned.
    capacity: usize,
    /// The speed² at which the window's first block starts (final).
    head_entry_sq: f64,
    estimate: TimeEstimate,
}

const MIN_CAPACITY: usize = 256;

impl Planner {
    /// A planner with the tool at rest at `start`.
    pub fn new(profile: &MachineProfile, start: Point3) -> Self {
        Self {
            profile: *profile,
            at: start,
            prev: None,
            window: Vec::with_capacity(MIN_CAPACITY),
            capacity: MIN_CAPACITY,
            head_entry_sq: 0.0,
            estimate: TimeEstimate::default(),
        }
    }

    /// Where the tool is (after the moves given so far).
    pub fn position(&self) -> Point3 {
        self.at
    }

    /// A straight move to `to`: a rapid at the machine's rapid rates, a plunge or cut at
    /// `feed` mm/min (capped by the axis limits).
    pub fn move_to(&mut self, kind: MoveKind, to: Point3, feed: f64) {
        let d = to - self.at;
        let delta = [d.x, d.y, d.z];
        let length = d.length();
        self.at = to;
        // Zero-length (and NaN) moves are dropped, as GRBL drops them.
        if length.is_nan() || length <= 1e-9 {
            return;
        }
        let u = delta.map(|c| c / length);
        let (limits, programmed) = match kind {
            MoveKind::Rapid => (self.profile.rapid_rate, f64::INFINITY),
            MoveKind::Plunge | MoveKind::Cut => (self.profile.max_feed, feed),
        };
        let nominal = limit_by_axes(limits, u).min(programmed) / 60.0;
        let accel = limit_by_axes(self.profile.acceleration, u);
        let nominal_sq = nominal * nominal;
        let max_entry_sq = match self.prev {
            None => 0.0,
            Some((pu, prev_nominal_sq)) => {
                self.junction_sq(pu, u).min(nominal_sq).min(prev_nominal_sq)
            }
        };
        self.prev = Some((u, nominal_sq));
        self.estimate.full_speed_s += length / nominal;
        self.estimate.blocks += 1;
        self.window.push(Block {
            kind,
            length,
            accel,
            nominal_sq,
            max_entry_sq,
            entry_sq: 0.0,
        });
        if self.window.len() >= self.capacity {
            self.plan(false);
        }
    }

    /// The machine comes to rest here (a spindle start, a tool change, the program's end).
    pub fn stop(&mut self) {
        self.plan(true);
        self.prev = None;
    }

    /// A stop and a wait of `seconds` (`G4 P`).
    pub fn dwell(&mut self, seconds: f64) {
        self.stop();
        self.estimate.dwell_s += seconds;
        self.estimate.total_s += seconds;
    }

    /// Stops at the end and says how long it all took.
    pub fn finish(mut self) -> TimeEstimate {
        self.stop();
        self.estimate
    }

    /// GRBL's junction speed² between unit directions `a` (in) and `b` (out).
    fn junction_sq(&self, a: [f64; 3], b: [f64; 3]) -> f64 {
        // cos of the angle between the reversed incoming direction and the outgoing one.
        let cos_theta = -(a[0] * b[0] + a[1] * b[1] + a[2] * b[2]);
        if cos_theta > 0.999_999 {
            // A reversal: the tool stops.
            return 0.0;
        }
        if cos_theta < -0.999_999 {
            // Straight on: only the blocks' own speeds limit the junction.
            return f64::INFINITY;
        }
        let change = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let n = (change[0] * change[0] + change[1] * change[1] + change[2] * change[2]).sqrt();
        let accel = limit_by_axes(self.profile.acceleration, change.map(|c| c / n));
        let sin_half = (0.5 * (1.0 - cos_theta)).sqrt();
        accel * self.profile.junction_deviation * sin_half / (1.0 - sin_half)
    }

    /// Plans the window: all of it when `to_rest` (the tool stops after its last block),
    /// else the blocks whose speeds are final; their time goes into the estimate.
    fn plan(&mut self, to_rest: bool) {
        let w = &mut self.window;
        if w.is_empty() {
            return;
        }
        // Backward pass, assuming a stop after the last block; `room` is Σ 2·a·d of the
        // blocks from k to the end, `fastest` the highest nominal speed² in the window.
        let fastest = w.iter().map(|b| b.nominal_sq).fold(0.0, f64::max);
        let mut next_entry_sq = 0.0;
        let mut room = 0.0;
        // Blocks before `done` are final: the room after them suffices to stop from any
        // speed in the window.
        let mut done = if to_rest { w.len() } else { 0 };
        for k in (0..w.len()).rev() {
            let b = &mut w[k];
            if !to_rest && done == 0 && room >= fastest {
                // `room` is that of blocks k+1.., so block k's exit (k+1's entry) is final.
                done = k + 1;
            }
            let reach = 2.0 * b.accel * b.length;
            b.entry_sq = b.max_entry_sq.min(next_entry_sq + reach);
            next_entry_sq = b.entry_sq;
            room += reach;
        }
        // Forward pass over the final blocks, timing each.
        let mut entry_sq = self
            .head_entry_sq
            .min(w.first().map_or(0.0, |b| b.entry_sq));
        for k in 0..done {
            let b = w[k];
            let next = if k + 1 < w.len() {
                w[k + 1].entry_sq
            } else {
                0.0
            };
            let exit_sq = next.min(entry_sq + 2.0 * b.accel * b.length);
            let t = block_time(b.length, b.accel, b.nominal_sq, entry_sq, exit_sq);
            let e = &mut self.estimate;
            match b.kind {
                MoveKind::Rapid => e.rapid_s += t,
                MoveKind::Plunge => e.plunge_s += t,
                MoveKind::Cut => e.cutting_s += t,
            }
            e.total_s += t;
            entry_sq = exit_sq;
        }
        if done > 0 {
            self.head_entry_sq = entry_sq;
        }
        w.drain(..done);
        if to_rest {
            self.head_entry_sq = 0.0;
            self.capacity = MIN_CAPACITY;
        } else if w.len() * 2 > self.capacity {
            self.capacity *= 2;
        }
    }
}

/// The lowest of `limits[k] / |u[k]|` over the axes the unit vector `u` moves: the fastest
/// rate (or acceleration) along `u` that keeps every axis within its own.
fn limit_by_axes(limits: [f64; 3], u: [f64; 3]) -> f64 {
    let mut v = f64::INFINITY;
    for k in 0..3 {
        if u[k].abs() > 1e-12 {
            v = v.min(limits[k] / u[k].abs());
        }
    }
    v
}

/// Seconds for `length` mm starting at speed² `v0_sq`, ending at `v1_sq`, accelerating at
/// `accel` up to at most `nominal_sq`: a trapezoid, or a triangle if it cannot cruise.
fn block_time(length: f64, accel: f64, nominal_sq: f64, v0_sq: f64, v1_sq: f64) -> f64 {
    let (v0, v1) = (v0_sq.max(0.0).sqrt(), v1_sq.max(0.0).sqrt());
    let up = (nominal_sq - v0_sq).max(0.0) / (2.0 * accel);
    let down = (nominal_sq - v1_sq).max(0.0) / (2.0 * accel);
    if up + down <= length {
        let vn = nominal_sq.sqrt();
        (vn - v0) / accel + (vn - v1) / accel + (length - up - down) / vn
    } else {
        let peak = ((2.0 * accel * length + v0_sq + v1_sq) / 2.0).max(v0_sq.max(v1_sq));
        let peak = peak.sqrt();
        (peak - v0) / accel + (peak - v1) / accel
    }
}

/// The time `toolpath` takes at `feeds` on `profile`, from rest at its start to rest at its
/// end: its moves alone, without the positioning and spindle start a program adds around
/// them (see [`crate::gcode::estimate_program`] for those).
pub fn estimate_time(
    toolpath: &crate::Toolpath,
    feeds: &crate::Feeds,
    profile: &MachineProfile,
) -> TimeEstimate {
    let mut p = Planner::new(profile, toolpath.start);
    p.follow(toolpath, feeds);
    p.finish()
}

impl Planner {
    /// The moves of `toolpath` at `feeds`, from wherever the tool is (normally the
    /// toolpath's start).
    pub fn follow(&mut self, toolpath: &crate::Toolpath, feeds: &crate::Feeds) {
        self.follow_moves(&toolpath.moves, feeds);
    }

    /// `moves` at `feeds`, from wherever the tool is: a toolpath's moves, or a piece of them.
    pub fn follow_moves(&mut self, moves: &[crate::toolpath::Move], feeds: &crate::Feeds) {
        for m in moves {
            let feed = match m.kind {
                MoveKind::Rapid => f64::INFINITY,
                MoveKind::Plunge => feeds.plunge_feed,
                MoveKind::Cut => feeds.feed,
            };
            self.move_to(m.kind, m.to, feed);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each estimate against a closed form worked out here by hand, not with the planner's
    //! helpers: constant acceleration `a` from `v0` to `v` takes `(v − v0)/a` seconds and
    //! `(v² − v0²)/(2a)` mm.
    use super::*;
    use crate::toolpath::{Feeds, Toolpath};

    /// A machine with equal X, Y and Z, fast enough that only the feed limits the speed.
    fn machine(accel: f64, deviation: f64) -> MachineProfile {
        MachineProfile {
            max_feed: [1e6; 3],
            rapid_rate: [1e6; 3],
            acceleration: [accel; 3],
            junction_deviation: deviation,
        }
    }

    fn feeds(feed: f64) -> Feeds {
        Feeds {
            feed,
            plunge_feed: feed,
            spindle_rpm: 10000.0,
            rapid_rate: 1e6,
        }
    }

    fn cuts(start: Point3, points: &[Point3]) -> Toolpath {
        let mut tp = Toolpath {
            start,
            moves: vec![],
        };
        for &p in points {
            tp.push(MoveKind::Cut, p);
        }
        tp
    }

    fn close(estimate: f64, exact: f64, tol: f64) {
        eprintln!("estimate {estimate:.6} s, closed form {exact:.6} s");
        assert!(
            (estimate - exact).abs() <= tol * exact,
            "estimate {estimate} s, closed form {exact} s ({:+.4} %)",
            (estimate / exact - 1.0) * 100.0
        );
    }

    /// Seconds for `s` mm entered at `v0` and left at `v1`, cruising at `v` in between
    /// (the segment is long enough to reach `v`).
    fn trapezoid(s: f64, v: f64, a: f64, v0: f64, v1: f64) -> f64 {
        let t_up = (v - v0) / a;
        let t_down = (v - v1) / a;
        let d_up = v0 * t_up + a * t_up * t_up / 2.0;
        let d_down = v1 * t_down + a * t_down * t_down / 2.0;
        assert!(d_up + d_down <= s, "the segment is too short to cruise");
        t_up + t_down + (s - d_up - d_down) / v
    }

    #[test]
    fn a_long_straight_line_accelerates_cruises_and_decelerates() {
        // 1 m at 3000 mm/min (50 mm/s), 500 mm/s²: the ramps take v/a = 0.1 s each and cover
        // v²/a = 5 mm together, so t = (L − 5)/v + 2·v/a = L/v + v/a = 20.1 s.
        let (l, v, a) = (1000.0, 50.0, 500.0);
        let tp = cuts(Point3::new(0.0, 0.0, 0.0), &[Point3::new(l, 0.0, 0.0)]);
        let e = estimate_time(&tp, &feeds(3000.0), &machine(a, 0.01));
        let exact = l / v + v / a;
        assert_eq!(exact, 20.1);
        close(e.total_s, exact, 0.01);
        close(e.total_s, exact, 1e-9);
        assert_eq!(e.cutting_s, e.total_s);
        close(e.full_speed_s, l / v, 1e-12);

        // Diagonally in XY at 3/5, 4/5: Y's 500 mm/s² is the limit, 625 mm/s² along the move.
        let tp = cuts(
            Point3::new(0.0, 0.0, 0.0),
            &[Point3::new(600.0, 800.0, 0.0)],
        );
        let e = estimate_time(&tp, &feeds(3000.0), &machine(a, 0.01));
        close(e.total_s, l / v + v / 625.0, 1e-9);

        // The same line in 100 000 collinear pieces of 10 µm: the junctions run straight on,
        // and the look-ahead (several hundred pieces to stop from 50 mm/s) is exact.
        let pieces: Vec<Point3> = (1..=100_000)
            .map(|k| Point3::new(k as f64 * 0.01, 0.0, 0.0))
            .collect();
        let e = estimate_time(
            &cuts(Point3::new(0.0, 0.0, 0.0), &pieces),
            &feeds(3000.0),
            &machine(a, 0.01),
        );
        close(e.total_s, exact, 1e-9);
        assert_eq!(e.blocks, 100_000);
    }

    #[test]
    fn a_square_slows_to_the_junction_speed_at_each_corner() {
        // A 20 mm square at 3000 mm/min (50 mm/s), 500 mm/s² per axis, δ = 0.01 mm.
        let (s, v, a, delta) = (20.0, 50.0, 500.0, 0.01);
        // At a 90° corner the direction changes along (−1, 1)/√2, where both axes together
        // allow 500·√2 mm/s²; θ = 90°, sin(θ/2) = √½:
        // v_j² = a_j·δ·sin(θ/2)/(1 − sin(θ/2)) = 500·√2·0.01·√½/(1 − √½) = 5/(1 − √½).
        let h = 0.5f64.sqrt();
        let vj = (500.0 * 2f64.sqrt() * delta * h / (1.0 - h)).sqrt();
        assert!((vj - (5.0 / (1.0 - h)).sqrt()).abs() < 1e-12);
        assert!((vj - 4.1317).abs() < 1e-4, "{vj}");
        let exact = trapezoid(s, v, a, 0.0, vj)
            + 2.0 * trapezoid(s, v, a, vj, vj)
            + trapezoid(s, v, a, vj, 0.0);
        let o = Point3::new(0.0, 0.0, 0.0);
        let tp = cuts(
            o,
            &[
                Point3::new(s, 0.0, 0.0),
                Point3::new(s, s, 0.0),
                Point3::new(0.0, s, 0.0),
                o,
            ],
        );
        let e = estimate_time(&tp, &feeds(3000.0), &machine(a, delta));
        close(e.total_s, exact, 0.01);
        close(e.total_s, exact, 1e-9);
        // About 1.95 s against 1.6 s at the feed.
        assert!(e.total_s > 1.15 * 80.0 / v, "{}", e.total_s);
    }

    #[test]
    fn a_fine_zigzag_never_reaches_its_feed() {
        // 2000 pieces of 0.5 mm alternating along (1, 1)/√2 and (1, −1)/√2, at 3000 mm/min
        // (50 mm/s), 500 mm/s² per axis, δ = 0.01 mm.
        let (d, n, a, delta) = (0.5, 2000usize, 500.0, 0.01);
        let step = d * 0.5f64.sqrt();
        let pieces: Vec<Point3> = (1..=n)
            .map(|k| Point3::new(k as f64 * step, if k % 2 == 1 { step } else { 0.0 }, 0.0))
            .collect();
        // Along each piece both axes move at 1/√2 of the speed: 500·√2 mm/s².
        let ab = 500.0 * 2f64.sqrt();
        // The direction changes along Y alone (500 mm/s²), by 90°.
        let h = 0.5f64.sqrt();
        let vj = (a * delta * h / (1.0 - h)).sqrt();
        // Too short to reach 50 mm/s: each piece accelerates to a peak and decelerates
        // (a triangle), from v0 to v1; the peak v_p meets the distance d:
        // (v_p² − v0²)/(2a) + (v_p² − v1²)/(2a) = d.
        let triangle = |v0: f64, v1: f64| {
            let peak = ((2.0 * ab * d + v0 * v0 + v1 * v1) / 2.0).sqrt();
            assert!(peak < 50.0);
            (peak - v0) / ab + (peak - v1) / ab
        };
        let exact = triangle(0.0, vj) + (n - 2) as f64 * triangle(vj, vj) + triangle(vj, 0.0);
        let e = estimate_time(
            &cuts(Point3::new(0.0, 0.0, 0.0), &pieces),
            &feeds(3000.0),
            &machine(a, delta),
        );
        close(e.total_s, exact, 0.01);
        close(e.total_s, exact, 1e-9);
        // Length ÷ feed says 20 s; the machine takes more than twice that.
        let naive = n as f64 * d / 50.0;
        assert!(e.total_s > 2.0 * naive, "{} against {naive}", e.total_s);
    }

    #[test]
    fn a_reversal_stops_the_tool() {
        // Out and back 1 mm at 500 mm/s²: two triangles from rest to rest, 2·√(d/a) each.
        let o = Point3::new(0.0, 0.0, 0.0);
        let tp = cuts(o, &[Point3::new(1.0, 0.0, 0.0), o]);
        let e = estimate_time(&tp, &feeds(6000.0), &machine(500.0, 0.01));
        close(e.total_s, 4.0 * (1.0f64 / 500.0).sqrt(), 1e-9);
    }

    #[test]
    fn axis_limits_cap_rapids_feeds_and_acceleration() {
        // A rapid straight down 30 mm on the hobby machine: Z's 1500 mm/min (25 mm/s) and
        // 200 mm/s²: t = L/v + v/a.
        let m = MachineProfile::hobby();
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 30.0));
        tp.push(MoveKind::Rapid, Point3::new(0.0, 0.0, 0.0));
        let e = estimate_time(&tp, &Feeds::default(), &m);
        close(e.total_s, 30.0 / 25.0 + 25.0 / 200.0, 1e-9);
        assert_eq!(e.rapid_s, e.total_s);
        // A programmed feed above the axis limit runs at the limit.
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 0.0));
        tp.push(MoveKind::Cut, Point3::new(100.0, 0.0, 0.0));
        let fast = Feeds {
            feed: 50_000.0,
            ..Feeds::default()
        };
        let e = estimate_time(&tp, &fast, &m);
        let v = 5000.0 / 60.0;
        close(e.total_s, 100.0 / v + v / 500.0, 1e-9);
    }

    #[test]
    fn stops_and_dwells_add_up() {
        let m = machine(500.0, 0.01);
        let mut p = Planner::new(&m, Point3::new(0.0, 0.0, 0.0));
        p.move_to(MoveKind::Cut, Point3::new(100.0, 0.0, 0.0), 3000.0);
        p.dwell(2.0);
        p.move_to(MoveKind::Cut, Point3::new(200.0, 0.0, 0.0), 3000.0);
        let e = p.finish();
        // Two lines from rest to rest, and the wait.
        close(e.total_s, 2.0 * (100.0 / 50.0 + 50.0 / 500.0) + 2.0, 1e-9);
        assert_eq!(e.dwell_s, 2.0);
    }

    /// A deterministic wander of short and long moves of every kind.
    fn wander(n: usize) -> Toolpath {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 5.0));
        let mut at = tp.start;
        for _ in 0..n {
            let scale = if next() < 0.8 { 0.3 } else { 30.0 };
            let kind = match next() {
                r if r < 0.1 => MoveKind::Rapid,
                r if r < 0.2 => MoveKind::Plunge,
                _ => MoveKind::Cut,
            };
            at = at + Point3::new(next() - 0.5, next() - 0.5, 0.2 * (next() - 0.5)) * scale;
            tp.push(kind, at);
        }
        tp
    }

    #[test]
    fn never_shorter_than_length_over_feed() {
        let tp = wander(20_000);
        let f = Feeds::default();
        let st = tp.stats(&f);
        for accel in [100.0, 1000.0, 1e5] {
            let m = MachineProfile {
                acceleration: [accel; 3],
                ..MachineProfile::hobby()
            };
            let e = estimate_time(&tp, &f, &m);
            assert!(e.total_s >= e.full_speed_s, "{accel}: {e:?}");
            // The feeds are below the axis limits: cutting and plunging take at least their
            // length ÷ feed.
            assert!(e.cutting_s >= 60.0 * st.cut_length / f.feed, "{e:?}");
            assert!(
                e.plunge_s >= 60.0 * st.plunge_length / f.plunge_feed,
                "{e:?}"
            );
            let parts = e.cutting_s + e.plunge_s + e.rapid_s + e.dwell_s;
            close(parts, e.total_s, 1e-12);
        }
        // With every axis at the old estimate's rapid rate, the nominal speeds are the old
        // estimate's but for diagonal rapids, which the axes together run faster.
        let m = MachineProfile {
            max_feed: [f.rapid_rate; 3],
            rapid_rate: [f.rapid_rate; 3],
            ..MachineProfile::hobby()
        };
        let e = estimate_time(&tp, &f, &m);
        assert!(e.full_speed_s <= st.machining_time_s);
        assert!(e.total_s >= st.machining_time_s, "{e:?} against {st:?}");
        // Acceleration without limit tends to length ÷ feed.
        let m = MachineProfile {
            acceleration: [1e9; 3],
            junction_deviation: 1e3,
            ..MachineProfile::hobby()
        };
        let e = estimate_time(&tp, &f, &m);
        close(e.total_s, e.full_speed_s, 1e-3);
    }

    #[test]
    fn profiles_validate() {
        assert!(MachineProfile::hobby().validate().is_ok());
        assert!(MachineProfile::stiff().validate().is_ok());
        let bad = MachineProfile {
            acceleration: [500.0, 0.0, 200.0],
            ..MachineProfile::hobby()
        };
        assert!(bad.validate().unwrap_err().contains("Y acceleration"));
        assert!(MachineProfile::hobby().describe().is_ascii());
    }
}
