//! Toolpaths: typed moves of the tool tip, and their statistics.

use crate::geom::Point3;
use serde::{Deserialize, Serialize};

/// What kind of motion a move is; decides the G-code word and the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveKind {
    /// Positioning at rapid rate, never in contact with material (G0).
    Rapid,
    /// Feeding down into material at the plunge feed (G1).
    Plunge,
    /// Cutting at the feed rate (G1).
    Cut,
}

/// One straight move of the tool tip to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub kind: MoveKind,
    pub to: Point3,
}

/// Feeds and speeds. They do not change the geometry, only G-code and time estimates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feeds {
    /// Cutting feed, mm/min.
    pub feed: f64,
    /// Plunge feed, mm/min.
    pub plunge_feed: f64,
    /// Spindle speed, rpm.
    pub spindle_rpm: f64,
    /// The machine's rapid rate, mm/min, for time estimates only.
    pub rapid_rate: f64,
}

impl Default for Feeds {
    fn default() -> Self {
        Self {
            feed: 1000.0,
            plunge_feed: 300.0,
            spindle_rpm: 18000.0,
            rapid_rate: 5000.0,
        }
    }
}

impl Feeds {
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("feed", self.feed),
            ("plunge feed", self.plunge_feed),
            ("spindle speed", self.spindle_rpm),
            ("rapid rate", self.rapid_rate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be a positive number, got {v}"));
            }
        }
        Ok(())
    }
}

/// A toolpath: moves of the tool tip from a start position at safe height.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Toolpath {
    /// Where the tool is before the first move (above the first point, at safe height).
    pub start: Point3,
    pub moves: Vec<Move>,
}

/// Lengths in mm, time in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolpathStats {
    pub cut_length: f64,
    pub plunge_length: f64,
    pub rapid_length: f64,
    pub moves: usize,
    pub retracts: usize,
    pub machining_time_s: f64,
}

impl Toolpath {
    /// A toolpath with no moves yet, the tool at `start`.
    pub fn new(start: Point3) -> Self {
        Self {
            start,
            moves: Vec::new(),
        }
    }

    pub fn push(&mut self, kind: MoveKind, to: Point3) {
        self.moves.push(Move { kind, to });
    }

    /// The same moves measured from `zero` (every point less `zero`).
    pub fn translated(&self, zero: Point3) -> Toolpath {
        Toolpath {
            start: self.start - zero,
            moves: self
                .moves
                .iter()
                .map(|m| Move {
                    kind: m.kind,
                    to: m.to - zero,
                })
                .collect(),
        }
    }

    /// Where the tool ends up.
    pub fn end(&self) -> Point3 {
        self.moves.last().map_or(self.start, |m| m.to)
    }

    /// The highest z any move goes to (minus infinity for none; the start, at safe height,
    /// is left out): whether a path climbs over what stands in its way.
    pub fn highest_move_z(&self) -> f64 {
        self.moves
            .iter()
            .map(|m| m.to.z)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Length and time statistics at the given feeds.
    pub fn stats(&self, feeds: &Feeds) -> ToolpathStats {
        let mut s = ToolpathStats {
            moves: self.moves.len(),
            ..ToolpathStats::default()
        };
        let mut at = self.start;
        for m in &self.moves {
            let len = (m.to - at).length();
            match m.kind {
                MoveKind::Rapid => {
                    s.rapid_length += len;
                    if m.to.z > at.z && m.to.x == at.x && m.to.y == at.y {
                        s.retracts += 1;
                    }
                }
                MoveKind::Plunge => s.plunge_length += len,
                MoveKind::Cut => s.cut_length += len,
            }
            at = m.to;
        }
        s.machining_time_s = 60.0
            * (s.cut_length / feeds.feed
                + s.plunge_length / feeds.plunge_feed
                + s.rapid_length / feeds.rapid_rate);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_add_up_lengths_and_time() {
        let mut tp = Toolpath::new(Point3::new(0.0, 0.0, 10.0));
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 0.0));
        tp.push(MoveKind::Cut, Point3::new(30.0, 40.0, 0.0));
        tp.push(MoveKind::Rapid, Point3::new(30.0, 40.0, 10.0));
        let feeds = Feeds {
            feed: 600.0,
            plunge_feed: 100.0,
            spindle_rpm: 10000.0,
            rapid_rate: 6000.0,
        };
        let s = tp.stats(&feeds);
        assert_eq!(s.cut_length, 50.0);
        assert_eq!(s.plunge_length, 10.0);
        assert_eq!(s.rapid_length, 10.0);
        assert_eq!(s.retracts, 1);
        assert!((s.machining_time_s - (5.0 + 6.0 + 0.1)).abs() < 1e-9);
    }
}
