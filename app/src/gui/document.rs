//! The window's document and the commands that change it.
//!
//! [`Document`] is what a job is while the window shows it: the placed model, the stock, the
//! tools, the operations and the output settings — everything a job file holds
//! ([`millpond_core::job_file::Job`]), plus the loaded mesh. Panels read it and emit
//! [`Command`]s; [`Document::apply`] is the only code that changes it, so that undo and redo
//! ([`History`]), the unsaved-changes mark and the recovery file all see every change
//! (ARCHITECTURE.md §6). Computed toolpaths are not part of it: they follow the document
//! (an operation whose inputs changed is shown outdated) and are never undone.
//!
//! Undo keeps whole snapshots rather than inverse commands. A snapshot is small — the mesh
//! and its index are shared (`Arc`) — and restoring one cannot drift from the state the user
//! saw, which inverse commands written by hand for every edit could.

use super::model::Model;
use super::operations::{OperationDef, Operations, Stock, Strategy, Tool, ToolLibrary};
use millpond_core::job_file::{Job, ModelFile, ModelRef, Output};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The job the window shows.
#[derive(Clone, Debug)]
pub struct Document {
    pub model: Option<Model>,
    pub stock: Stock,
    pub tools: ToolLibrary,
    pub operations: Operations,
    pub output: Output,
}

/// A change to the document. Each is one step of undo, except that consecutive edits of the
/// same thing within [`MERGE_WINDOW`] are one step (a drag on a number, typing a name).
#[derive(Clone, Debug)]
pub enum Command {
    /// A loaded or re-placed model (from the loader thread; units and placement changes
    /// arrive as a rebuilt model).
    ReplaceModel(Box<Model>),
    SetStock(Stock),
    /// A new tool (a copy of the given one, or the default end mill); it is selected.
    AddTool(Option<Box<Tool>>),
    /// Replaces the tool with the same id.
    EditTool(Box<Tool>),
    RemoveTool(u64),
    /// The whole tool library at once (an import).
    SetTools(ToolLibrary),
    /// A new operation with a strategy and a tool; it is selected.
    AddOperation(Strategy, u64),
    /// Replaces the operation with the same id (parameters, name, tool, feeds, enabled,
    /// shown).
    EditOperation(Box<OperationDef>),
    RemoveOperation(u64),
    /// One place earlier (`true`) or later in the machining order.
    MoveOperation(u64, bool),
    SetOutput(Output),
}

/// What consecutive edits must share to merge into one undo step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EditKey {
    Stock,
    Tool(u64),
    Operation(u64),
    Output,
}

/// Edits of one thing closer together than this are one undo step: a drag on a number sends
/// an edit every frame, and typing a value sends one per key.
pub const MERGE_WINDOW: Duration = Duration::from_millis(1000);

/// At least this many steps can be undone.
pub const UNDO_STEPS: usize = 200;

impl Command {
    fn key(&self) -> Option<EditKey> {
        match self {
            Command::SetStock(_) => Some(EditKey::Stock),
            Command::EditTool(t) => Some(EditKey::Tool(t.id)),
            Command::EditOperation(o) => Some(EditKey::Operation(o.id)),
            Command::SetOutput(_) => Some(EditKey::Output),
            _ => None,
        }
    }

    /// What undoing it undoes, for the Edit menu.
    pub fn describe(&self) -> String {
        match self {
            Command::ReplaceModel(m) => format!("model {}", m.name),
            Command::SetStock(_) => "stock".into(),
            Command::AddTool(_) => "new tool".into(),
            Command::EditTool(t) => format!("tool \"{}\"", t.name),
            Command::RemoveTool(_) => "delete tool".into(),
            Command::SetTools(_) => "import tools".into(),
            Command::AddOperation(s, _) => format!("add {}", s.label().to_lowercase()),
            Command::EditOperation(o) => format!("\"{}\"", o.name),
            Command::RemoveOperation(_) => "remove operation".into(),
            Command::MoveOperation(..) => "reorder operations".into(),
            Command::SetOutput(_) => "G-code settings".into(),
        }
    }
}

impl Document {
    /// A new job: no model yet, the default stock, the given tools, roughing then finishing.
    pub fn new(tools: ToolLibrary, output: Output) -> Self {
        Self {
            model: None,
            stock: Stock::default(),
            operations: Operations::with_default(&tools),
            tools,
            output,
        }
    }

    /// Applies a command. Commands naming something that is gone (a tool deleted meanwhile)
    /// do nothing; a tool an operation uses is not deleted.
    pub fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::ReplaceModel(m) => self.model = Some(*m),
            Command::SetStock(s) => self.stock = s,
            Command::AddTool(copy) => {
                self.tools.add(copy.as_deref());
            }
            Command::EditTool(t) => {
                if let Some(old) = self.tools.get_mut(t.id) {
                    *old = *t;
                }
            }
            Command::RemoveTool(id) => {
                if !self.operations.list.iter().any(|o| o.tool == id) {
                    self.tools.remove(id);
                }
            }
            Command::SetTools(t) => self.tools = t,
            Command::AddOperation(s, tool) => {
                self.operations.add(s, tool);
            }
            Command::EditOperation(o) => {
                if let Some(old) = self.operations.get_mut(o.id) {
                    *old = *o;
                }
            }
            Command::RemoveOperation(id) => self.operations.remove(id),
            Command::MoveOperation(id, up) => self.operations.move_by(id, up),
            Command::SetOutput(o) => self.output = o,
        }
    }

    /// The job file's view of the document. `None` without a model.
    pub fn to_job(&self) -> Option<Job> {
        let m = self.model.as_ref()?;
        Some(Job {
            model: ModelRef {
                file: match &m.path {
                    None => ModelFile::Sample,
                    Some(p) => ModelFile::Stl {
                        path: p.clone(),
                        hash: Some(m.original.hash()),
                    },
                },
                units: m.units,
                placement: m.placement.clone(),
            },
            stock: self.stock.clone(),
            tools: self.tools.tools.clone(),
            operations: self.operations.list.clone(),
            output: self.output.clone(),
        })
    }

    /// A document from a job file, without its model (which loads off the UI thread).
    pub fn from_job(job: &Job) -> Self {
        Self {
            model: None,
            stock: job.stock.clone(),
            tools: ToolLibrary {
                tools: job.tools.clone(),
            },
            operations: Operations::from_list(job.operations.clone()),
            output: job.output.clone(),
        }
    }
}

/// One state the document was in, and the state's identity.
#[derive(Debug)]
struct Snapshot {
    doc: Document,
    state: u64,
    what: String,
}

/// Undo and redo over whole document snapshots, and the identity of the current state (for
/// the unsaved-changes mark: saving remembers the state it saved).
#[derive(Debug)]
pub struct History {
    undo: VecDeque<Snapshot>,
    redo: Vec<Snapshot>,
    /// The key and time of the last recorded edit, while it may still merge.
    open_edit: Option<(EditKey, Instant)>,
    state: u64,
    next_state: u64,
}

impl Default for History {
    fn default() -> Self {
        Self {
            undo: VecDeque::new(),
            redo: Vec::new(),
            open_edit: None,
            state: 0,
            next_state: 1,
        }
    }
}

impl History {
    /// The current state's identity: it changes with every change, and undo and redo bring
    /// back the identity of the state they restore.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Applies `cmd` to `doc` as one undoable step (or as part of the previous one, for a
    /// continued edit of the same thing).
    pub fn execute(&mut self, doc: &mut Document, cmd: Command, now: Instant) {
        let key = cmd.key();
        let merges = matches!((key, self.open_edit), (Some(k), Some((open, at)))
            if k == open && now.saturating_duration_since(at) < MERGE_WINDOW);
        if !merges {
            self.undo.push_back(Snapshot {
                doc: doc.clone(),
                state: self.state,
                what: cmd.describe(),
            });
            if self.undo.len() > UNDO_STEPS {
                self.undo.pop_front();
            }
        }
        self.open_edit = key.map(|k| (k, now));
        self.redo.clear();
        doc.apply(cmd);
        self.state = self.next_state;
        self.next_state += 1;
    }

    /// Steps back; `false` when there is nothing to undo. The selected operation stays
    /// selected where it still exists (selection is not a change).
    pub fn undo(&mut self, doc: &mut Document) -> bool {
        let Some(s) = self.undo.pop_back() else {
            return false;
        };
        let current = self.restore(doc, s);
        self.redo.push(current);
        true
    }

    pub fn redo(&mut self, doc: &mut Document) -> bool {
        let Some(s) = self.redo.pop() else {
            return false;
        };
        let current = self.restore(doc, s);
        self.undo.push_back(current);
        true
    }

    /// Puts snapshot `s` in place of `doc`; returns the state it replaced, labelled as `s`
    /// was (what undoing or redoing it again does is the same change).
    fn restore(&mut self, doc: &mut Document, s: Snapshot) -> Snapshot {
        let current = Snapshot {
            doc: std::mem::replace(doc, s.doc),
            state: self.state,
            what: s.what,
        };
        self.state = s.state;
        self.open_edit = None;
        current
    }

    /// What Undo would undo ("stock", "\"Roughing 1\""), if anything.
    pub fn undo_label(&self) -> Option<&str> {
        self.undo.back().map(|s| s.what.as_str())
    }

    pub fn redo_label(&self) -> Option<&str> {
        self.redo.last().map(|s| s.what.as_str())
    }

    /// Forgets every step: a new or opened job starts a history of its own.
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
        self.open_edit = None;
        self.state = self.next_state;
        self.next_state += 1;
    }

    /// Ends the open edit, so the next edit of the same thing is a step of its own (a
    /// pointer released, focus moved).
    pub fn close_edit(&mut self) {
        self.open_edit = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::setup::RasterParams;

    fn doc() -> Document {
        Document::new(ToolLibrary::default(), Output::default())
    }

    fn raster(d: &Document) -> (OperationDef, RasterParams) {
        let op = d.operations.list[1].clone();
        let Strategy::RasterFinishing(p) = op.strategy else {
            panic!("the default job finishes with raster")
        };
        (op, p)
    }

    fn with_stepover(op: &OperationDef, p: RasterParams, stepover: f64) -> Command {
        let mut op = op.clone();
        op.strategy = Strategy::RasterFinishing(RasterParams { stepover, ..p });
        Command::EditOperation(Box::new(op))
    }

    #[test]
    fn a_drag_is_one_step_and_separate_edits_are_separate_steps() {
        let mut d = doc();
        let mut h = History::default();
        let (op, p) = raster(&d);
        let t0 = Instant::now();
        // A drag: a hundred frames 16 ms apart.
        for i in 0..100 {
            let t = t0 + Duration::from_millis(16 * i);
            h.execute(&mut d, with_stepover(&op, p, 0.5 + i as f64 * 0.01), t);
        }
        assert_eq!(raster(&d).1.stepover, 0.5 + 99.0 * 0.01);
        // Another field later: a second step.
        let mut stock = d.stock.clone();
        stock.margin_xy = 7.0;
        h.execute(
            &mut d,
            Command::SetStock(stock),
            t0 + Duration::from_secs(5),
        );
        assert!(h.undo(&mut d));
        assert_eq!(d.stock.margin_xy, Stock::default().margin_xy);
        assert_eq!(raster(&d).1.stepover, 0.5 + 99.0 * 0.01);
        assert!(h.undo(&mut d));
        assert_eq!(raster(&d).1.stepover, 0.5, "the whole drag undone at once");
        assert!(!h.undo(&mut d));
        assert!(h.redo(&mut d) && h.redo(&mut d));
        assert_eq!(d.stock.margin_xy, 7.0);
        assert!(!h.redo(&mut d));
    }

    #[test]
    fn the_same_field_edited_twice_apart_is_two_steps() {
        let mut d = doc();
        let mut h = History::default();
        let (op, p) = raster(&d);
        let t0 = Instant::now();
        h.execute(&mut d, with_stepover(&op, p, 0.3), t0);
        h.execute(&mut d, with_stepover(&op, p, 0.2), t0 + MERGE_WINDOW * 2);
        h.undo(&mut d);
        assert_eq!(raster(&d).1.stepover, 0.3);
    }

    #[test]
    fn states_identify_saved_documents_across_undo_and_redo() {
        let mut d = doc();
        let mut h = History::default();
        let saved = h.state();
        let t0 = Instant::now();
        h.execute(&mut d, Command::MoveOperation(2, true), t0);
        let moved = h.state();
        assert_ne!(moved, saved);
        h.undo(&mut d);
        assert_eq!(
            h.state(),
            saved,
            "undo to the saved state: no unsaved changes"
        );
        h.redo(&mut d);
        assert_eq!(h.state(), moved);
        // A new change after undo drops the redo steps.
        h.undo(&mut d);
        h.execute(&mut d, Command::RemoveOperation(1), t0);
        assert!(!h.redo(&mut d));
        assert_ne!(h.state(), moved);
    }

    #[test]
    fn at_least_a_hundred_steps_undo_and_the_oldest_drop_beyond_the_limit() {
        let mut d = doc();
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..UNDO_STEPS + 50 {
            h.execute(
                &mut d,
                Command::AddOperation(Strategy::defaults().remove(0), 1),
                t0 + Duration::from_millis(i as u64),
            );
        }
        let mut n = 0;
        while h.undo(&mut d) {
            n += 1;
        }
        assert_eq!(n, UNDO_STEPS);
        assert!(n >= 100);
        assert_eq!(d.operations.list.len(), 2 + 50);
    }

    #[test]
    fn a_tool_in_use_is_not_deleted() {
        let mut d = doc();
        let used = d.operations.list[0].tool;
        d.apply(Command::RemoveTool(used));
        assert!(d.tools.get(used).is_some());
    }
}
