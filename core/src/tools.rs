//! The tool library: the cutters a shop owns, each with its pocket number in the machine's
//! tool table and the feeds and speeds it runs at. The window edits it (and keeps it in the
//! config folder); jobs name its tools.

use crate::cutter::Cutter;
use crate::toolpath::Feeds;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A tool whose numbers do not describe a tool that can cut.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("tool \"{tool}\": {message}")]
pub struct ToolError {
    /// The tool's name.
    pub tool: String,
    pub message: String,
}

/// Cutter shapes, in the words on a tool box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToolShape {
    Flat,
    Ball,
    Bull,
    VBit,
}

impl ToolShape {
    pub const ALL: [ToolShape; 4] = [
        ToolShape::Flat,
        ToolShape::Ball,
        ToolShape::Bull,
        ToolShape::VBit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ToolShape::Flat => "Flat end mill",
            ToolShape::Ball => "Ball nose",
            ToolShape::Bull => "Bull nose",
            ToolShape::VBit => "V-bit",
        }
    }
}

/// One tool of the library: geometry plus the feeds and speeds it runs at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Stable identity; operations refer to tools by it.
    pub id: u64,
    /// Pocket number in the machine's tool table (the `T` word).
    pub number: u32,
    pub name: String,
    pub shape: ToolShape,
    /// mm.
    pub diameter: f64,
    /// Bull nose only, mm.
    pub corner_radius: f64,
    /// V-bit only, degrees between opposite flanks.
    pub included_angle: f64,
    /// mm/min.
    pub feed: f64,
    /// mm/min.
    pub plunge_feed: f64,
    /// rpm.
    pub spindle_rpm: f64,
    /// The deepest the tool may cut into material in one move, mm; 0 (and in libraries
    /// saved before there was such a field) means the usual for its shape and size
    /// ([`crate::stock_model::default_max_depth_of_cut`]).
    #[serde(default)]
    pub max_depth_of_cut: f64,
    /// Cutting edges (for feeds per tooth; shown in the library).
    #[serde(default = "two_flutes")]
    pub flutes: u32,
    /// How far the tool stands out of its holder, mm; 0 when not given. Deeper than this
    /// the holder would meet the material, so it also bounds the depth of cut.
    #[serde(default)]
    pub stick_out: f64,
    /// The name follows the shape and size ("6 mm flat end mill") until the user edits it.
    /// Libraries saved before this existed keep their names as given.
    #[serde(default)]
    pub auto_name: bool,
}

fn two_flutes() -> u32 {
    2
}

impl Tool {
    /// The cutter the core computes with, checked.
    pub fn cutter(&self) -> Result<Cutter, ToolError> {
        let c = match self.shape {
            ToolShape::Flat => Cutter::Flat {
                diameter: self.diameter,
            },
            ToolShape::Ball => Cutter::Ball {
                diameter: self.diameter,
            },
            ToolShape::Bull => Cutter::Bull {
                diameter: self.diameter,
                corner_radius: self.corner_radius,
            },
            ToolShape::VBit => Cutter::VBit {
                diameter: self.diameter,
                included_angle: self.included_angle,
            },
        };
        c.validate().map_err(|e| ToolError {
            tool: self.name.clone(),
            message: e.to_string(),
        })?;
        Ok(c)
    }

    /// Feeds for G-code and time estimates; `rapid_rate` is the machine's (Preferences).
    pub fn feeds(&self, rapid_rate: f64) -> Result<Feeds, ToolError> {
        let f = Feeds {
            feed: self.feed,
            plunge_feed: self.plunge_feed,
            spindle_rpm: self.spindle_rpm,
            rapid_rate,
        };
        f.validate().map_err(|message| ToolError {
            tool: self.name.clone(),
            message,
        })?;
        Ok(f)
    }

    /// The deepest this tool may cut in one move, mm, for `cutter` (its own shape).
    pub fn max_depth_of_cut(&self, cutter: &Cutter) -> f64 {
        let edges = if self.max_depth_of_cut.is_finite() && self.max_depth_of_cut > 0.0 {
            self.max_depth_of_cut
        } else {
            crate::stock_model::default_max_depth_of_cut(cutter)
        };
        if self.stick_out.is_finite() && self.stick_out > 0.0 {
            edges.min(self.stick_out)
        } else {
            edges
        }
    }

    /// The name a tool of this shape and size goes by: "6 mm flat end mill", "3 mm ball
    /// nose", "6 mm bull nose R1", "6 mm 60° V-bit".
    pub fn describe(&self) -> String {
        let d = self.diameter;
        match self.shape {
            ToolShape::Flat => format!("{d} mm flat end mill"),
            ToolShape::Ball => format!("{d} mm ball nose"),
            ToolShape::Bull => format!("{d} mm bull nose R{}", self.corner_radius),
            ToolShape::VBit => format!("{d} mm {}° V-bit", self.included_angle),
        }
    }

    /// After the shape or a size changed: a name that follows them follows.
    pub fn rename_if_automatic(&mut self) {
        if self.auto_name {
            self.name = self.describe();
        }
    }

    /// "T1 3 mm ball nose" — what lists show.
    pub fn title(&self) -> String {
        format!("T{} {}", self.number, self.name)
    }
}

/// The tools, saved between runs (tools.json in the config folder).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolLibrary {
    pub tools: Vec<Tool>,
}

impl Default for ToolLibrary {
    /// A starter set a hobby router or a small mill can run as it is.
    fn default() -> Self {
        let tool = |id, name: &str, shape, diameter, feed, plunge_feed, spindle_rpm| Tool {
            id,
            number: id as u32,
            name: name.into(),
            shape,
            diameter,
            corner_radius: 1.0,
            included_angle: 60.0,
            feed,
            plunge_feed,
            spindle_rpm,
            max_depth_of_cut: 0.0,
            flutes: 2,
            stick_out: 0.0,
            auto_name: true,
        };
        Self {
            tools: vec![
                tool(
                    1,
                    "3 mm ball nose",
                    ToolShape::Ball,
                    3.0,
                    1000.0,
                    300.0,
                    18000.0,
                ),
                tool(
                    2,
                    "6 mm flat end mill",
                    ToolShape::Flat,
                    6.0,
                    1200.0,
                    300.0,
                    16000.0,
                ),
                tool(
                    3,
                    "6 mm bull nose R1",
                    ToolShape::Bull,
                    6.0,
                    1200.0,
                    300.0,
                    16000.0,
                ),
                tool(
                    4,
                    "6 mm 60° V-bit",
                    ToolShape::VBit,
                    6.0,
                    800.0,
                    200.0,
                    18000.0,
                ),
            ],
        }
    }
}

impl ToolLibrary {
    pub fn get(&self, id: u64) -> Option<&Tool> {
        self.tools.iter().find(|t| t.id == id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Tool> {
        self.tools.iter_mut().find(|t| t.id == id)
    }

    /// Adds a copy of `template` (or a 6 mm flat end mill) with a new id and the next free
    /// tool number; returns the id.
    pub fn add(&mut self, template: Option<&Tool>) -> u64 {
        let id = self.tools.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let number = self.tools.iter().map(|t| t.number).max().unwrap_or(0) + 1;
        let mut t = template.cloned().unwrap_or(Tool {
            id,
            number,
            name: "6 mm flat end mill".into(),
            shape: ToolShape::Flat,
            diameter: 6.0,
            corner_radius: 1.0,
            included_angle: 60.0,
            feed: 1200.0,
            plunge_feed: 300.0,
            spindle_rpm: 16000.0,
            max_depth_of_cut: 0.0,
            flutes: 2,
            stick_out: 0.0,
            auto_name: true,
        });
        if template.is_some() {
            t.name = format!("{} (copy)", t.name);
            t.auto_name = false;
        }
        t.id = id;
        t.number = number;
        self.tools.push(t);
        id
    }

    pub fn remove(&mut self, id: u64) {
        self.tools.retain(|t| t.id != id);
    }

    /// Sorts the tools of an imported library: the ones already here (same number, same
    /// tool) are dropped, the ones with a free number are to add, and the ones whose number
    /// a different tool here has are conflicts for the user to settle.
    pub fn plan_import(&self, imported: Vec<Tool>) -> ImportPlan {
        let mut plan = ImportPlan::default();
        for t in imported {
            match self.tools.iter().find(|h| h.number == t.number) {
                None => plan.new.push(t),
                Some(here) if same_tool(here, &t) => plan.already_here += 1,
                Some(here) => plan.conflicts.push(NumberConflict {
                    imported: t,
                    here: here.clone(),
                }),
            }
        }
        plan
    }

    /// Carries out an import: the new tools, and each conflict as chosen (`choices` in the
    /// order of `plan.conflicts`). Every tool added gets a fresh id.
    pub fn import(&mut self, plan: &ImportPlan, choices: &[ImportChoice]) {
        let add = |lib: &mut ToolLibrary, mut t: Tool, number: u32| {
            t.id = lib.tools.iter().map(|x| x.id).max().unwrap_or(0) + 1;
            t.number = number;
            lib.tools.push(t);
        };
        for t in &plan.new {
            add(self, t.clone(), t.number);
        }
        for (c, choice) in plan.conflicts.iter().zip(choices) {
            match choice {
                ImportChoice::Replace => {
                    if let Some(here) = self.tools.iter_mut().find(|h| h.id == c.here.id) {
                        let id = here.id;
                        *here = c.imported.clone();
                        here.id = id;
                    }
                }
                ImportChoice::AddWithNextNumber => {
                    let number = self.tools.iter().map(|x| x.number).max().unwrap_or(0) + 1;
                    add(self, c.imported.clone(), number);
                }
                ImportChoice::Skip => {}
            }
        }
    }
}

/// Whether two tools are the same but for their ids.
fn same_tool(a: &Tool, b: &Tool) -> bool {
    Tool {
        id: b.id,
        ..a.clone()
    } == *b
}

/// An imported tool whose number a different tool of the library already has.
#[derive(Clone, Debug, PartialEq)]
pub struct NumberConflict {
    pub imported: Tool,
    pub here: Tool,
}

impl std::fmt::Display for NumberConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "T{} is \"{}\" in the file but \"{}\" here",
            self.here.number, self.imported.name, self.here.name
        )
    }
}

/// What an import would do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportPlan {
    /// Tools with numbers the library does not use.
    pub new: Vec<Tool>,
    pub conflicts: Vec<NumberConflict>,
    /// Tools the library already has, identical.
    pub already_here: usize,
}

/// How to settle a [`NumberConflict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportChoice {
    /// The imported tool takes the place (and number) of the one here.
    Replace,
    /// The imported tool is added under the next free number.
    AddWithNextNumber,
    /// The imported tool is left out.
    Skip,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_adds_new_numbers_skips_copies_and_settles_conflicts_as_chosen() {
        let mut lib = ToolLibrary::default();
        let n = lib.tools.len();
        let mut same = lib.tools[0].clone();
        same.id = 99;
        let mut clash = lib.tools[1].clone();
        clash.name = "Their 6 mm".into();
        clash.diameter = 6.35;
        let mut clash2 = lib.tools[2].clone();
        clash2.name = "Their bull".into();
        let mut fresh = lib.tools[0].clone();
        fresh.number = 40;
        fresh.name = "New one".into();
        let plan = lib.plan_import(vec![same, clash.clone(), clash2, fresh]);
        assert_eq!(plan.already_here, 1);
        assert_eq!(plan.new.len(), 1);
        assert_eq!(plan.conflicts.len(), 2);
        assert!(
            plan.conflicts[0].to_string().contains("Their 6 mm"),
            "{}",
            plan.conflicts[0]
        );
        let before = lib.clone();
        lib.import(
            &plan,
            &[ImportChoice::Replace, ImportChoice::AddWithNextNumber],
        );
        assert_eq!(lib.tools.len(), n + 2);
        let replaced = &lib.tools[1];
        assert_eq!(
            (replaced.id, replaced.number, replaced.diameter),
            (before.tools[1].id, clash.number, 6.35)
        );
        assert!(
            lib.tools
                .iter()
                .any(|t| t.name == "Their bull" && t.number == 41)
        );
        assert!(
            lib.tools
                .iter()
                .any(|t| t.name == "New one" && t.number == 40)
        );
        let ids: std::collections::BTreeSet<u64> = lib.tools.iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), lib.tools.len(), "ids stay unique");
    }

    #[test]
    fn a_new_tool_is_named_after_its_shape_and_size_until_renamed() {
        let mut lib = ToolLibrary::default();
        let id = lib.add(None);
        let t = lib.get_mut(id).unwrap();
        assert_eq!(t.name, "6 mm flat end mill");
        t.shape = ToolShape::Bull;
        t.diameter = 8.0;
        t.corner_radius = 0.5;
        t.rename_if_automatic();
        assert_eq!(t.name, "8 mm bull nose R0.5");
        t.shape = ToolShape::VBit;
        t.included_angle = 90.0;
        t.rename_if_automatic();
        assert_eq!(t.name, "8 mm 90° V-bit");
        // The user names it: it stays.
        t.name = "engraver".into();
        t.auto_name = false;
        t.diameter = 3.0;
        t.rename_if_automatic();
        assert_eq!(t.name, "engraver");
        // A library saved before names followed shapes keeps its names; two flutes.
        let old: Tool = serde_json::from_str(
            r#"{"id":1,"number":1,"name":"my ball","shape":"Ball","diameter":3.0,
                "corner_radius":1.0,"included_angle":60.0,"feed":1000.0,
                "plunge_feed":300.0,"spindle_rpm":18000.0}"#,
        )
        .unwrap();
        assert!(!old.auto_name);
        assert_eq!((old.flutes, old.stick_out), (2, 0.0));
    }

    #[test]
    fn the_stick_out_bounds_the_depth_of_cut() {
        let mut t = ToolLibrary::default().tools[1].clone();
        let c = t.cutter().unwrap();
        assert_eq!(
            t.max_depth_of_cut(&c),
            12.0,
            "two diameters of a 6 mm end mill"
        );
        t.stick_out = 10.0;
        assert_eq!(t.max_depth_of_cut(&c), 10.0, "the holder stands 10 mm up");
        t.max_depth_of_cut = 4.0;
        assert_eq!(t.max_depth_of_cut(&c), 4.0);
    }
}
