//! [`MillpondApp`]: the state of the window and what the buttons do.
//!
//! Everything here is plain data with methods (tests call them directly or click the
//! buttons that call them); drawing lives in `ui.rs`. Background work — loading, computing,
//! dialogs, export, the pool — reports over channels that [`MillpondApp::poll`] drains once
//! per frame.

use super::check::ProgramCheck;
use super::compute::{Backend, Compute, ComputeEvent, Computed, EarlierOp, JobRequest, RestInput};
use super::dialogs::{self, Choice, PendingDialog};
use super::document::{Command, Document, History};
use super::export::{self, Exporter, Summary};
use super::model::{LoadOutcome, Model, ModelLoader, Placement, Units, display_name};
use super::operations::{self, OperationDef, Strategy, Tool, ToolLibrary};
use super::preferences::{self, PoolControl, PoolState, Preferences, QUIT_POOL_WAIT};
use super::settings::{load_json, save_json};
use super::stats_panel::StatsPanel;
use super::view3d::SceneView;
use crate::common::{DEFAULT_MODEL, DEFAULT_MODEL_NAME, TOOLS_FILE};
use egui::DroppedFileHandle;
use millpond_core::MeshHash;
use millpond_core::gcode::ProgramUnits;
use millpond_core::job_file::{self, Job, ModelFile, Output};
use millpond_core::planner::estimate_time;
use millpond_core::post::{PostLibrary, PostProcessor};
use millpond_core::program::{self, PlannedOp, Program};
use millpond_core::setup::Setup;
use millpond_core::toolpath::ToolpathStats;
use millpond_core::tools::{ImportChoice, ImportPlan};
use millpond_core::{Aabb, TimeEstimate, Toolpath};
use millpond_net::{PoolStats, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How the app is started. Tests give every harness its own config folder.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Where preferences, the tool library, recent files and the pool secret are kept.
    pub config_dir: PathBuf,
    /// Testing aid: what to compute as soon as the window opens.
    pub autostart: Autostart,
    /// The model to open instead of the bundled part (`millpond MODEL`).
    pub open: Option<PathBuf>,
}

/// Testing aid (`MILLPOND_AUTOSTART`): generate at once, without a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Autostart {
    #[default]
    No,
    /// `MILLPOND_AUTOSTART=default`: the default operation, as one click on Generate does
    /// (for screenshots).
    Default,
    /// `MILLPOND_AUTOSTART=1`: a deliberately heavy raster (0.01 mm stepover and sampling,
    /// about a minute of work), so quitting can be tested while the workers are busy.
    Heavy,
}

impl Autostart {
    fn from_env() -> Self {
        match std::env::var("MILLPOND_AUTOSTART").as_deref() {
            Ok("1" | "heavy") => Autostart::Heavy,
            Ok("default") => Autostart::Default,
            _ => Autostart::No,
        }
    }
}

impl AppOptions {
    /// The real app: the platform config folder (or `MILLPOND_CONFIG_DIR`), and
    /// `MILLPOND_AUTOSTART`.
    pub fn from_env() -> Self {
        Self {
            config_dir: crate::pool::config_dir(),
            autostart: Autostart::from_env(),
            open: None,
        }
    }

    /// Settings in `dir`, nothing started automatically.
    pub fn with_config_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: dir.into(),
            autostart: Autostart::No,
            open: None,
        }
    }
}

/// Window title: the job (`*` when it has unsaved changes) and the model.
pub fn window_title(job: Option<&str>, unsaved: bool, model_name: Option<&str>) -> String {
    let mark = if unsaved { "*" } else { "" };
    let job = job.unwrap_or("Untitled job");
    match model_name {
        Some(n) => format!("Millpond — {job}{mark} — {n}"),
        None => format!("Millpond — {job}{mark}"),
    }
}

const SESSION_FILE: &str = "session.json";
const MAX_RECENT: usize = 10;
/// Shortest time between two uploads of a growing preview.
const PREVIEW_EVERY: Duration = Duration::from_millis(200);

/// This computer's progress as the statistics panel last showed it: running, the current
/// operation and its chunks done, jobs finished.
type LocalProgress = (bool, Option<(u64, u32)>, usize);

/// What the app remembers between runs besides preferences and tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    /// Models, most recent first.
    pub recent: Vec<PathBuf>,
    /// Job files, most recent first.
    pub recent_jobs: Vec<PathBuf>,
    /// The job file whose unsaved changes the recovery file holds (`None`: a job never
    /// saved), while there is one.
    pub recovery_of: Option<PathBuf>,
    /// The post new jobs start with (the last chosen).
    pub post: String,
    /// The program units new jobs start with (the last chosen).
    pub program_units: ProgramUnits,
    pub show_stats: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            recent: Vec::new(),
            recent_jobs: Vec::new(),
            recovery_of: None,
            post: millpond_core::post::DEFAULT_POST.to_string(),
            program_units: ProgramUnits::Millimetres,
            show_stats: false,
        }
    }
}

/// An import of tools waiting for the user to settle its number conflicts.
#[derive(Debug)]
pub struct PendingImport {
    pub file: String,
    pub plan: ImportPlan,
    /// One per conflict.
    pub choices: Vec<ImportChoice>,
}

/// A job being opened while its model loads.
#[derive(Debug)]
struct OpeningJob {
    /// The model's hash when the job was saved.
    hash: Option<MeshHash>,
    /// Opened from its file (no unsaved changes), not restored from the recovery file.
    clean: bool,
}

/// Unsaved work of the last run.
#[derive(Debug)]
struct RecoveryOffer {
    /// The job file it was a change of, if the job had been saved.
    job_path: Option<PathBuf>,
}

/// The recovery file, in the config folder.
const RECOVERY_FILE: &str = "recovery.millpond";
/// How long after a change the recovery file is written.
const RECOVERY_DELAY: Duration = Duration::from_secs(3);

/// `path` with the job extension, when the user typed a name without it.
fn with_job_extension(path: PathBuf) -> PathBuf {
    if path.extension().is_some_and(|e| e == job_file::EXTENSION) {
        path
    } else {
        let mut s = path.into_os_string();
        s.push(".");
        s.push(job_file::EXTENSION);
        PathBuf::from(s)
    }
}

/// A finished operation's toolpath and its statistics.
#[derive(Debug, Clone)]
pub struct OpResult {
    pub computed: Computed,
    pub stats: ToolpathStats,
    /// Machining time on the machine of Preferences (redone when they change).
    pub time: TimeEstimate,
}

/// Preferences-window state that is not saved.
#[derive(Default)]
pub struct PrefsUi {
    pub open: bool,
    /// The editable copy; applied (saved, pool restarted) by "Save and apply", the server
    /// mode switch, and adding or removing a remote server.
    pub edit: Preferences,
    pub show_secret: bool,
    /// The secret field's text: zeroed when replaced, cleared or dropped, and never shown by
    /// `Debug`. (The text field's own undo copies are egui's.)
    pub secret_text: Zeroizing<String>,
    pub new_remote: String,
    pub message: Option<Result<String, String>>,
}

impl std::fmt::Debug for PrefsUi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = if self.secret_text.is_empty() {
            "(empty)"
        } else {
            "(hidden)"
        };
        f.debug_struct("PrefsUi")
            .field("open", &self.open)
            .field("edit", &self.edit)
            .field("show_secret", &self.show_secret)
            .field("secret_text", &secret)
            .field("new_remote", &self.new_remote)
            .field("message", &self.message)
            .finish()
    }
}

pub struct MillpondApp {
    pub options: AppOptions,
    /// The job: changed only through [`MillpondApp::execute`] (and undo and redo).
    doc: Document,
    history: History,
    /// Where the job was last saved or opened from; `None`: not saved yet.
    job_path: Option<PathBuf>,
    /// The history state last saved (or opened): any other state has unsaved changes.
    saved_state: u64,
    /// When the recovery file is due to be written (a few seconds after a change).
    recovery_due: Option<Instant>,
    /// A job whose model is loading: checked against its saved hash once it arrives.
    opening_job: Option<OpeningJob>,
    /// The units and placement of a job whose model the user is asked to find.
    locating: Option<(Units, Vec<Placement>)>,
    /// Unsaved work of the last run, until the user restores or discards it.
    recovery_offer: Option<RecoveryOffer>,
    /// Tools being imported whose numbers clash with the library's.
    pub pending_import: Option<PendingImport>,
    pub loader: ModelLoader,
    /// Errors shown at the top of the window until dismissed.
    pub banners: Vec<String>,
    pub session: Session,
    pub selected_tool: Option<u64>,
    pub results: BTreeMap<u64, OpResult>,
    /// The operation whose toolpath is drawn up to a move, and that move.
    inspect_until: Option<(u64, u32)>,
    /// The heights drawn, when not all.
    inspect_z: Option<(f64, f64)>,
    /// The last failure of each operation.
    pub op_errors: BTreeMap<u64, String>,
    pub compute: Compute,
    /// The saved, applied preferences.
    pub prefs: Preferences,
    pub prefs_ui: PrefsUi,
    pub secret: Option<Secret>,
    pub pool: PoolControl,
    pub pool_stats: Option<PoolStats>,
    /// The last pool notice the status bar said: the pool (its node id; a restarted pool is a
    /// new node) and the notice's number (from 1).
    pool_notice_seen: (u64, u64),
    pub stats: StatsPanel,
    pub exporter: Exporter,
    /// Jobs handed to a pool member to run detached, and the ids remembered.
    pub detached: super::detached::DetachedJobs,
    /// The program checked against the stock: warnings shown before export.
    pub program_check: ProgramCheck,
    /// The post-processors Export can use: the built-in ones and the user's
    /// (`run_job::posts_dir`), read at start.
    pub posts: PostLibrary,
    /// Simulate: the program machined into the stock, off the UI thread.
    pub simulation: super::simulation::Simulation,
    /// The last thing that happened, for the status bar.
    pub status: String,
    pub(super) view: SceneView,
    pub(super) open_dialog: Option<(Choice, PendingDialog)>,
    pub(super) ctx: egui::Context,
    title: String,
    last_refresh: Option<Instant>,
    /// This computer's progress when the statistics were last refreshed: running, the
    /// current operation and its chunks done, jobs finished.
    stats_progress: Option<LocalProgress>,
    tools_changed: Option<Instant>,
    model_generation: u64,
    sent_stock: Option<Aabb>,
    /// When an autostart was asked for, until it starts.
    autostart_at: Option<Instant>,
    /// The preview the 3D view has: operation, chunks in it, when it was sent.
    preview_sent: Option<(u64, u32, Instant)>,
}

impl std::fmt::Debug for MillpondApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MillpondApp")
            .field("model", &self.doc.model.as_ref().map(|m| &m.name))
            .field("job", &self.job_path)
            .field("operations", &self.doc.operations.list.len())
            .field("results", &self.results.len())
            .field("computing", &self.compute.is_running())
            .finish_non_exhaustive()
    }
}

impl MillpondApp {
    /// Builds the app with the bundled default model loaded and a raster finishing operation
    /// ready, reading settings from `options.config_dir`. This is what `millpond` runs and
    /// what UI tests build through `Harness::builder().build_eframe(|cc| ...)`.
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let ctx = cc.egui_ctx.clone();
        let dir = options.config_dir.clone();
        let mut banners = Vec::new();
        let (prefs, warning) = Preferences::load(&dir);
        banners.extend(warning);
        let tools = match load_json::<ToolLibrary>(&dir.join(TOOLS_FILE)) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                banners.push(e);
                ToolLibrary::default()
            }
        };
        let session = match load_json::<Session>(&dir.join(SESSION_FILE)) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                banners.push(e);
                Session::default()
            }
        };
        let secret = match preferences::load_secret(&dir) {
            Ok(Some(s)) => Some(s),
            Ok(None) => Secret::from_env().and_then(Result::ok),
            Err(e) => {
                banners.push(e);
                None
            }
        };
        let mut doc = Document::new(
            tools,
            Output {
                post: session.post.clone(),
                units: session.program_units,
                spindle_dwell_s: prefs.spindle_dwell_s,
            },
        );
        if options.autostart == Autostart::Heavy
            && let Some(op) = doc
                .operations
                .list
                .iter_mut()
                .find(|o| matches!(o.strategy, Strategy::RasterFinishing(_)))
            && let Strategy::RasterFinishing(p) = &mut op.strategy
        {
            p.stepover = 0.01;
            p.sampling = 0.01;
            op.name = "Fine raster (autostart)".into();
        }
        let (detached, warning) = super::detached::DetachedJobs::new(ctx.clone(), dir.clone());
        banners.extend(warning);
        let posts = crate::run_job::post_library(&dir);
        banners.extend(posts.broken.iter().map(|e| format!("post not used: {e}")));
        let mut app = Self {
            posts,
            loader: ModelLoader::new(ctx.clone()),
            banners,
            selected_tool: doc.tools.tools.first().map(|t| t.id),
            doc,
            history: History::default(),
            job_path: None,
            saved_state: 0,
            recovery_due: None,
            opening_job: None,
            locating: None,
            recovery_offer: None,
            pending_import: None,
            inspect_until: None,
            inspect_z: None,
            results: BTreeMap::new(),
            op_errors: BTreeMap::new(),
            compute: Compute::new(ctx.clone()),
            prefs_ui: PrefsUi {
                edit: prefs.clone(),
                ..PrefsUi::default()
            },
            pool: PoolControl::new(ctx.clone(), dir.clone()),
            prefs,
            secret,
            pool_stats: None,
            pool_notice_seen: (0, 0),
            stats: StatsPanel {
                visible: session.show_stats,
                ..StatsPanel::default()
            },
            session,
            exporter: Exporter::default(),
            detached,
            program_check: ProgramCheck::default(),
            simulation: Default::default(),
            status: String::new(),
            view: SceneView::new(cc.gl.clone()),
            open_dialog: None,
            ctx,
            title: String::new(),
            last_refresh: None,
            stats_progress: None,
            tools_changed: None,
            model_generation: 0,
            sent_stock: None,
            autostart_at: None,
            preview_sent: None,
            options,
        };
        // The first model is part of the new job, not a change to it.
        app.opening_job = Some(OpeningJob {
            hash: None,
            clean: true,
        });
        match app.options.open.clone() {
            // Loaded off the UI thread like File > Open; a file that cannot be read leaves the
            // window empty with the reason in a banner.
            Some(path) => app.open_path(path),
            None => match ModelLoader::load_bundled_now(DEFAULT_MODEL, DEFAULT_MODEL_NAME) {
                Ok(m) => app.model_arrived(m),
                Err(e) => app.banners.push(e),
            },
        }
        if app.recovery_path().is_file() {
            app.recovery_offer = Some(RecoveryOffer {
                job_path: app.session.recovery_of.clone(),
            });
        }
        if app.prefs.server_mode {
            app.pool.apply(&app.prefs, app.secret.as_ref());
        }
        if app.options.autostart != Autostart::No {
            app.autostart_at = Some(Instant::now());
        }
        app
    }

    // ----- model -----

    /// Opens an STL file (off the UI thread).
    pub fn open_path(&mut self, path: PathBuf) {
        self.status = format!("Loading {}…", display_name(&path));
        self.loader.open_path(path);
    }

    /// Opens a dropped file: what drag and drop does.
    pub fn open_dropped(&mut self, file: DroppedFileHandle) {
        self.status = format!("Loading {}…", display_name(file.path()));
        self.loader.open_dropped(file);
    }

    /// Draws the built-in file browsers and acts on answered dialogs (from the UI pass: the
    /// built-in browser is a window of this one).
    pub(super) fn show_dialogs(&mut self, ctx: &egui::Context) {
        if let Some((_, d)) = &mut self.open_dialog {
            let answer = d.show(ctx);
            if let Some(notice) = d.take_notice() {
                tracing::info!("{notice}");
                self.status = notice;
            }
            if let Some(answer) = answer
                && let Some((purpose, _)) = self.open_dialog.take()
            {
                match (purpose, answer) {
                    (Choice::OpenModel, Some(path)) => self.open_path(path),
                    (Choice::OpenJob, Some(path)) => self.open_job(&path),
                    (Choice::SaveJob, Some(path)) => {
                        self.save_job_to(&with_job_extension(path));
                    }
                    (Choice::LocateModel, Some(path)) => self.locate_model(path),
                    (Choice::ImportTools, Some(path)) => self.import_tools(&path),
                    (Choice::ExportTools, Some(path)) => self.export_tools(&path),
                    (Choice::ExportGcode, Some(path)) => self.export_to(path),
                    (Choice::OpenModel, None) => {
                        self.status =
                            "No file chosen. You can also drop an STL file on the window.".into();
                    }
                    (Choice::LocateModel, None) => {
                        self.opening_job = None;
                        self.status = "No model chosen: the job has no model.".into();
                    }
                    (
                        Choice::OpenJob
                        | Choice::SaveJob
                        | Choice::ImportTools
                        | Choice::ExportTools
                        | Choice::ExportGcode,
                        None,
                    ) => {
                        self.status = "No file chosen.".into();
                    }
                }
            }
        }
        if let Some(notice) = self.exporter.show_dialog(ctx) {
            tracing::info!("{notice}");
            self.status = notice;
        }
        if let Some(notice) = self.detached.show_dialog(ctx, self.secret.as_ref()) {
            tracing::info!("{notice}");
            self.status = notice;
        }
    }

    fn ask(&mut self, purpose: Choice) {
        if self.open_dialog.is_some() {
            return;
        }
        let recent = match purpose {
            Choice::OpenModel | Choice::LocateModel => &self.session.recent,
            Choice::OpenJob
            | Choice::SaveJob
            | Choice::ImportTools
            | Choice::ExportTools
            | Choice::ExportGcode => &self.session.recent_jobs,
        };
        let start = recent
            .first()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_path_buf);
        let folders = dialogs::folders_of(recent);
        let browser = self.prefs.file_browser;
        let name = (purpose == Choice::SaveJob).then(|| {
            self.job_name().unwrap_or_else(|| {
                let (_, stem) = self.export_title();
                format!("{stem}.{}", job_file::EXTENSION)
            })
        });
        let dialog = dialogs::choose(&self.ctx, browser, purpose, start, name, folders);
        self.open_dialog = Some((purpose, dialog));
    }

    /// Asks for a model file with the desktop's dialog (or the built-in browser).
    pub fn open_dialog(&mut self) {
        self.ask(Choice::OpenModel);
    }

    pub fn set_units(&mut self, units: Units) {
        if let Some(m) = &self.doc.model
            && m.units != units
        {
            self.loader.replace(m, units, m.placement.clone());
        }
    }

    pub fn place(&mut self, step: Placement) {
        if let Some(m) = &self.doc.model {
            let mut placement = m.placement.clone();
            placement.push(step);
            self.loader.replace(m, m.units, placement);
        }
    }

    pub fn reset_placement(&mut self) {
        if let Some(m) = &self.doc.model {
            self.loader.replace(m, m.units, Vec::new());
        }
    }

    /// A model the loader built: a new part or a new placement is a change of the job (one
    /// undo step); the model of a job being opened is part of opening it.
    fn model_arrived(&mut self, mut model: Model) {
        self.model_generation += 1;
        model.generation = self.model_generation;
        if let Some(path) = &model.path {
            self.session.recent.retain(|p| p != path);
            self.session.recent.insert(0, path.clone());
            self.session.recent.truncate(MAX_RECENT);
            self.save_session();
        }
        self.status = format!("{}: {} triangles", model.name, model.triangles());
        match self.opening_job.take() {
            Some(job) => {
                if let Some(saved) = job.hash
                    && saved != model.original.hash()
                {
                    self.banners.push(format!(
                        "{} has changed since the job was saved: its toolpaths will differ \
                         from the saved job's. Generate them again and check them before \
                         cutting.",
                        model
                            .path
                            .as_deref()
                            .map_or_else(|| model.name.clone(), |p| p.display().to_string())
                    ));
                }
                let before = self.doc.clone();
                self.doc.model = Some(model);
                self.document_changed(&before);
                if job.clean {
                    // The model of a saved job is not a change to it.
                    self.saved_state = self.history.state();
                    self.recovery_due = None;
                }
            }
            None => self.execute(Command::ReplaceModel(Box::new(model))),
        }
    }

    // ----- the document -----

    /// The job the window shows. Change it with [`MillpondApp::execute`].
    pub fn doc(&self) -> &Document {
        &self.doc
    }

    /// Changes the job: one undoable step (or part of the previous one for a continued
    /// edit), and everything that shows the job follows.
    pub fn execute(&mut self, cmd: Command) {
        let before = self.doc.clone();
        self.history.execute(&mut self.doc, cmd, Instant::now());
        self.document_changed(&before);
    }

    /// Adds an operation (one command) and returns its id; it is selected.
    pub fn add_operation(&mut self, strategy: Strategy, tool: u64) -> u64 {
        self.execute(Command::AddOperation(strategy, tool));
        self.doc.operations.list.last().map_or(0, |o| o.id)
    }

    /// Changes an operation through a copy: one command.
    pub fn edit_operation(&mut self, id: u64, change: impl FnOnce(&mut OperationDef)) {
        if let Some(mut op) = self.doc.operations.get(id).cloned() {
            change(&mut op);
            self.execute(Command::EditOperation(Box::new(op)));
        }
    }

    /// Adds a tool (a copy of `like`, or the default end mill) and returns its id.
    pub fn add_tool(&mut self, like: Option<&Tool>) -> u64 {
        self.execute(Command::AddTool(like.cloned().map(Box::new)));
        self.doc.tools.tools.last().map_or(0, |t| t.id)
    }

    /// Changes a tool through a copy: one command.
    pub fn edit_tool(&mut self, id: u64, change: impl FnOnce(&mut Tool)) {
        if let Some(mut t) = self.doc.tools.get(id).cloned() {
            change(&mut t);
            self.execute(Command::EditTool(Box::new(t)));
        }
    }

    pub fn undo(&mut self) {
        let before = self.doc.clone();
        if self.history.undo(&mut self.doc) {
            self.document_changed(&before);
            self.status = "Undone.".into();
        }
    }

    pub fn redo(&mut self) {
        let before = self.doc.clone();
        if self.history.redo(&mut self.doc) {
            self.document_changed(&before);
            self.status = "Redone.".into();
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Ends the edit in progress (a drag released): the next edit is a step of its own.
    pub fn close_edit(&mut self) {
        self.history.close_edit();
    }

    /// Selects an operation for the editor (not a change to the job).
    pub fn select_operation(&mut self, id: u64) {
        self.doc.operations.selected = Some(id);
    }

    /// Whether the job has changes that are not saved.
    pub fn is_dirty(&self) -> bool {
        self.history.state() != self.saved_state
    }

    /// Where the job is saved, if it is.
    pub fn job_path(&self) -> Option<&std::path::Path> {
        self.job_path.as_deref()
    }

    fn job_name(&self) -> Option<String> {
        self.job_path.as_deref().map(display_name)
    }

    /// Brings everything that shows the document in line with it after a change from
    /// `before`: the 3D view, computed toolpaths of operations that are gone, the stock box,
    /// the tool library file, the session, and the recovery file's timer.
    fn document_changed(&mut self, before: &Document) {
        let model_of = |d: &Document| d.model.as_ref().map(|m| m.generation);
        if model_of(before) != model_of(&self.doc) {
            // Toolpaths of another placement or part are void; a running batch computes for
            // the old mesh, so it stops too.
            self.compute.cancel();
            for id in self.results.keys() {
                self.view.remove_toolpath(*id);
            }
            self.results.clear();
            self.op_errors.clear();
            match &self.doc.model {
                Some(m) => {
                    self.view.set_model(&m.mesh);
                    self.view.fit();
                }
                None => self.view.clear_model(),
            }
        }
        for op in &before.operations.list {
            match self.doc.operations.get(op.id) {
                None => {
                    if self.results.remove(&op.id).is_some() {
                        self.view.remove_toolpath(op.id);
                    }
                    self.op_errors.remove(&op.id);
                }
                Some(now) if now.visible != op.visible => {
                    self.view.set_toolpath_visible(op.id, now.visible);
                }
                Some(_) => {}
            }
        }
        if self
            .selected_tool
            .is_none_or(|id| self.doc.tools.get(id).is_none())
            || self.doc.tools.tools.len() > before.tools.tools.len()
        {
            // A new tool is the one to edit; a deleted one's place goes to the first.
            let added = self
                .doc
                .tools
                .tools
                .iter()
                .find(|t| before.tools.get(t.id).is_none());
            self.selected_tool = added.or(self.doc.tools.tools.first()).map(|t| t.id);
        }
        if self.doc.tools != before.tools {
            self.tools_edited();
        }
        if self.doc.output.post != before.output.post
            || self.doc.output.units != before.output.units
        {
            self.session.post = self.doc.output.post.clone();
            self.session.program_units = self.doc.output.units;
            self.save_session();
        }
        self.sync_stock();
        self.recovery_due = Some(Instant::now() + RECOVERY_DELAY);
    }

    // ----- job files -----

    /// File > New job: the sample part, the default stock and operations, the tool library.
    /// Unsaved work of the old job stays in the recovery file until the new one changes.
    pub fn new_job(&mut self) {
        let before = self.doc.clone();
        self.doc = Document::new(
            self.doc.tools.clone(),
            Output {
                post: self.session.post.clone(),
                units: self.session.program_units,
                spindle_dwell_s: self.prefs.spindle_dwell_s,
            },
        );
        self.doc.model = before.model.clone();
        self.job_path = None;
        self.opening_job = None;
        self.history.clear();
        self.saved_state = self.history.state();
        self.document_changed(&before);
        self.recovery_due = None;
        self.status = "New job.".into();
    }

    pub fn open_job_dialog(&mut self) {
        self.ask(Choice::OpenJob);
    }

    /// Save (Ctrl-S): to the job's file, or asks where the first time.
    pub fn save_job(&mut self) {
        match self.job_path.clone() {
            Some(p) => {
                self.save_job_to(&p);
            }
            None => self.save_job_dialog(),
        }
    }

    pub fn save_job_dialog(&mut self) {
        self.ask(Choice::SaveJob);
    }

    /// Writes the job to `path` (atomically); `false` with a banner if it cannot.
    pub fn save_job_to(&mut self, path: &std::path::Path) -> bool {
        let Some(job) = self.doc.to_job() else {
            self.banners
                .push("Nothing to save yet: open a model first.".into());
            return false;
        };
        match job.save(path) {
            Ok(()) => {
                self.job_path = Some(path.to_path_buf());
                self.saved_state = self.history.state();
                self.recovery_due = None;
                self.remove_recovery();
                self.remember_job(path);
                self.status = format!("Saved {}.", display_name(path));
                true
            }
            Err(e) => {
                self.banners.push(e.to_string());
                false
            }
        }
    }

    /// Opens a job file. A file that cannot be read changes nothing (its error, naming the
    /// file, line and field, shows in a banner). The job's model loads off the UI thread;
    /// one that moved is looked for next to the job file, then asked for.
    pub fn open_job(&mut self, path: &std::path::Path) {
        match Job::load(path) {
            Ok(job) => {
                self.remember_job(path);
                self.start_job(&job, Some(path.to_path_buf()), true);
            }
            Err(e) => {
                self.session.recent_jobs.retain(|p| p != path);
                self.banners.push(format!("Cannot open the job: {e}"));
            }
        }
    }

    /// Shows `job` (from `path`, or from the recovery file when `clean` is false).
    fn start_job(&mut self, job: &Job, path: Option<PathBuf>, clean: bool) {
        let before = self.doc.clone();
        self.doc = Document::from_job(job);
        self.job_path = path.clone();
        self.history.clear();
        self.saved_state = if clean {
            self.history.state()
        } else {
            u64::MAX
        };
        self.selected_tool = self.doc.tools.tools.first().map(|t| t.id);
        self.opening_job = None;
        self.document_changed(&before);
        self.recovery_due = None;
        let name = path
            .as_deref()
            .map_or_else(|| "the recovered job".into(), display_name);
        self.status = format!("Opened {name}.");
        let (units, placement) = (job.model.units, job.model.placement.clone());
        match &job.model.file {
            ModelFile::Sample => {
                match ModelLoader::load_bundled_now(DEFAULT_MODEL, DEFAULT_MODEL_NAME)
                    .and_then(|m| Model::build(m.name, None, m.original, units, placement))
                {
                    Ok(m) => {
                        self.opening_job = Some(OpeningJob { hash: None, clean });
                        self.model_arrived(m);
                    }
                    Err(e) => self.banners.push(e),
                }
            }
            ModelFile::Stl { path: model, hash } => {
                self.opening_job = Some(OpeningJob { hash: *hash, clean });
                let beside = path
                    .as_deref()
                    .and_then(|j| j.parent())
                    .zip(model.file_name())
                    .map(|(dir, name)| dir.join(name));
                if model.is_file() {
                    self.loader.open_placed(model.clone(), units, placement);
                } else if let Some(b) = beside.filter(|b| b.is_file()) {
                    self.status = format!(
                        "{} is not where the job says; using the one next to the job file.",
                        model.display()
                    );
                    self.loader.open_placed(b, units, placement);
                } else {
                    self.locating = Some((units, placement));
                    self.banners.push(format!(
                        "The job's model {} is not there (nor next to the job file): choose \
                         where it is now.",
                        model.display()
                    ));
                    self.ask(Choice::LocateModel);
                }
            }
        }
    }

    /// The model a job names, chosen by the user after it moved.
    fn locate_model(&mut self, path: PathBuf) {
        let (units, placement) = self.locating.take().unwrap_or_default();
        self.loader.open_placed(path, units, placement);
    }

    // ----- tool library exchange -----

    pub fn import_tools_dialog(&mut self) {
        self.ask(Choice::ImportTools);
    }

    pub fn export_tools_dialog(&mut self) {
        self.ask(Choice::ExportTools);
    }

    /// Writes the job's tools as a library file.
    pub fn export_tools(&mut self, path: &std::path::Path) {
        match job_file::save_tool_library(path, &self.doc.tools.tools) {
            Ok(()) => {
                self.status = format!(
                    "Exported {} tools to {}.",
                    self.doc.tools.tools.len(),
                    display_name(path)
                );
            }
            Err(e) => self.banners.push(e.to_string()),
        }
    }

    /// Reads a library file and adds its tools: at once when no number clashes, else after
    /// the user settled each clash in the import window.
    pub fn import_tools(&mut self, path: &std::path::Path) {
        match job_file::load_tool_library(path) {
            Ok(tools) => {
                let plan = self.doc.tools.plan_import(tools);
                let pending = PendingImport {
                    file: display_name(path),
                    choices: vec![ImportChoice::Skip; plan.conflicts.len()],
                    plan,
                };
                if pending.plan.conflicts.is_empty() {
                    self.finish_import(pending);
                } else {
                    self.pending_import = Some(pending);
                }
            }
            Err(e) => self.banners.push(format!("Cannot import tools: {e}")),
        }
    }

    /// Carries out the import waiting in the import window (one undo step).
    pub fn confirm_import(&mut self) {
        if let Some(p) = self.pending_import.take() {
            self.finish_import(p);
        }
    }

    pub fn cancel_import(&mut self) {
        self.pending_import = None;
        self.status = "Import cancelled.".into();
    }

    fn finish_import(&mut self, p: PendingImport) {
        let mut tools = self.doc.tools.clone();
        tools.import(&p.plan, &p.choices);
        let added = tools.tools.len() - self.doc.tools.tools.len();
        let replaced = p
            .choices
            .iter()
            .filter(|c| **c == ImportChoice::Replace)
            .count();
        if tools != self.doc.tools {
            self.execute(Command::SetTools(tools));
        }
        self.status = format!(
            "From {}: {added} tools added, {replaced} replaced, {} already here.",
            p.file, p.plan.already_here
        );
    }

    fn remember_job(&mut self, path: &std::path::Path) {
        let path = path.to_path_buf();
        self.session.recent_jobs.retain(|p| p != &path);
        self.session.recent_jobs.insert(0, path);
        self.session.recent_jobs.truncate(MAX_RECENT);
        self.save_session();
    }

    // ----- the recovery file -----

    fn recovery_path(&self) -> PathBuf {
        self.options.config_dir.join(RECOVERY_FILE)
    }

    /// Unsaved work found at start, offered for restoring.
    pub fn recovery_offered(&self) -> bool {
        self.recovery_offer.is_some()
    }

    /// Restores the unsaved job of the last run (it stays unsaved: the mark shows).
    pub fn restore_recovery(&mut self) {
        let Some(offer) = self.recovery_offer.take() else {
            return;
        };
        match Job::load(&self.recovery_path()) {
            Ok(job) => {
                self.start_job(&job, offer.job_path, false);
                self.status = "Restored the unsaved job of the last run.".into();
            }
            Err(e) => self
                .banners
                .push(format!("Cannot restore the unsaved job: {e}")),
        }
    }

    pub fn discard_recovery(&mut self) {
        self.recovery_offer = None;
        self.remove_recovery();
    }

    fn remove_recovery(&mut self) {
        if std::fs::remove_file(self.recovery_path()).is_ok() || self.session.recovery_of.is_some()
        {
            self.session.recovery_of = None;
            self.save_session();
        }
    }

    /// Writes the recovery file when it is due: the job as it stands if it has unsaved
    /// changes (atomically, like a save), none if it has not.
    fn write_recovery(&mut self) {
        self.recovery_due = None;
        if self.recovery_offer.is_some() {
            // The last run's work is not overwritten before the user answers.
            return;
        }
        if !self.is_dirty() {
            self.remove_recovery();
            return;
        }
        let Some(job) = self.doc.to_job() else {
            return;
        };
        let path = self.recovery_path();
        match job.save(&path) {
            Ok(()) => {
                if self.session.recovery_of != self.job_path {
                    self.session.recovery_of.clone_from(&self.job_path);
                    self.save_session();
                }
            }
            // Two tools with one number, say: the user learns of it on saving.
            Err(e) => tracing::warn!("cannot write the recovery file: {e}"),
        }
    }

    /// What the 3D view draws besides the cuts (its Model, Stock and Rapids boxes).
    /// Whether the 3D view shows a simulated stock (instead of the model).
    pub fn view_has_simulated_stock(&self) -> bool {
        self.view.has_simulated_stock()
    }

    pub fn view_layers(&mut self) -> &mut super::view3d::Layers {
        &mut self.view.layers
    }

    /// The tool the 3D view draws at the inspected move: its tip and which it is.
    pub fn view_tool_at(&self) -> Option<(millpond_core::Point3, millpond_core::Cutter)> {
        self.view.tool_at()
    }

    /// Where the 3D view's work-zero marker is, and how long its arms are.
    pub fn work_zero_shown(&self) -> Option<(millpond_core::Point3, f64)> {
        self.view.work_zero()
    }

    /// The stock box the 3D view shows.
    pub fn stock_shown(&self) -> Option<Aabb> {
        self.sent_stock
    }

    /// Sends the stock box to the 3D view when it changed.
    pub(super) fn sync_stock(&mut self) {
        let b = self
            .doc
            .model
            .as_ref()
            .map(|m| self.doc.stock.aabb(m.bounds()));
        if b != self.sent_stock {
            self.view.set_stock(b);
            self.sent_stock = b;
        }
        // The program's zero where the stock's work zero puts it, arms a fifth of the stock's
        // largest side.
        let zero = self.doc.model.as_ref().zip(b).map(|(m, stock)| {
            let size = stock.max - stock.min;
            let arm = 0.2 * size.x.max(size.y).max(size.z);
            (self.doc.stock.zero.point(stock, m.bounds()), arm)
        });
        self.view.set_work_zero(zero);
    }

    // ----- computing -----

    /// What rest roughing operation `id` is computed from: the enabled operations before it,
    /// each with its toolpath unless `batch` (the operations about to be computed, in order)
    /// computes it first.
    fn rest_input(&self, id: u64, batch: &[u64]) -> Result<RestInput, String> {
        let model = self.doc.model.as_ref().ok_or("open a model first")?;
        let setup = Setup::new(model.mesh.hash(), model.bounds(), &self.doc.stock)
            .map_err(|e| e.to_string())?;
        let mut earlier = Vec::new();
        for o in &self.doc.operations.list {
            if o.id == id {
                break;
            }
            if !o.enabled {
                continue;
            }
            let in_batch = batch.iter().take_while(|b| **b != id).any(|b| *b == o.id);
            let result = self.results.get(&o.id);
            let cutter = match result.filter(|_| !in_batch) {
                Some(r) => r.computed.planned.cutter,
                None => {
                    operations::plan(
                        o,
                        &self.doc.tools,
                        model,
                        &self.doc.stock,
                        self.prefs.rapid_rate,
                    )?
                    .cutter
                }
            };
            let toolpath = result.map(|r| r.computed.toolpath.clone());
            if toolpath.is_none() && !in_batch {
                return Err(format!(
                    "generate \"{}\" first: rest roughing cuts only what the operations before \
                     it leave",
                    o.name
                ));
            }
            earlier.push(EarlierOp {
                op_id: o.id,
                name: o.name.clone(),
                cutter,
                toolpath: if in_batch { None } else { toolpath },
            });
        }
        Ok(RestInput { setup, earlier })
    }

    /// Plans and starts the selected operation (`all == false`) or every enabled one, in
    /// order. Problems (no model, a bad parameter) show in the banner and per operation.
    pub fn generate(&mut self, all: bool) {
        let Some(model) = &self.doc.model else {
            self.banners.push("Open a model first.".into());
            return;
        };
        let ids: Vec<u64> = if all {
            self.doc
                .operations
                .list
                .iter()
                .filter(|o| o.enabled)
                .map(|o| o.id)
                .collect()
        } else {
            self.doc.operations.selected.into_iter().collect()
        };
        if ids.is_empty() {
            self.banners.push(if all {
                "No operation is enabled: tick the box in front of one.".into()
            } else {
                "Select an operation first.".into()
            });
            return;
        }
        let mut jobs = Vec::new();
        for &id in &ids {
            let Some(op) = self.doc.operations.get(id) else {
                continue;
            };
            match operations::plan(
                op,
                &self.doc.tools,
                model,
                &self.doc.stock,
                self.prefs.rapid_rate,
            ) {
                Ok(planned) => {
                    self.op_errors.remove(&id);
                    let rest = match planned.rest() {
                        Some(_) => match self.rest_input(id, &ids) {
                            Ok(r) => Some(r),
                            Err(e) => {
                                self.op_errors.insert(id, e.clone());
                                self.banners
                                    .push(format!("Cannot generate \"{}\": {e}", op.name));
                                continue;
                            }
                        },
                        None => None,
                    };
                    jobs.push(JobRequest {
                        op_id: id,
                        name: op.name.clone(),
                        mesh: model.mesh.clone(),
                        index: model.index.clone(),
                        planned,
                        generation: model.generation,
                        rest,
                    });
                }
                Err(e) => {
                    self.op_errors.insert(id, e.clone());
                    self.banners
                        .push(format!("Cannot generate \"{}\": {e}", op.name));
                }
            }
        }
        if jobs.is_empty() {
            return;
        }
        let backend = self.backend();
        self.status = format!(
            "Computing {} operation{}{}…",
            jobs.len(),
            if jobs.len() == 1 { "" } else { "s" },
            if matches!(backend, Backend::Pool { .. }) {
                " in the pool"
            } else {
                ""
            }
        );
        self.compute.start(jobs, backend);
    }

    /// Where long work runs: the pool while server mode is on, else this computer's cores.
    fn backend(&self) -> Backend {
        match self.pool.pool() {
            Some(p) => Backend::Pool {
                pool: Arc::downgrade(p),
                workers: self.prefs.local_workers.max(1),
            },
            None => Backend::Local {
                threads: self.prefs.local_workers.max(1),
            },
        }
    }

    pub fn cancel(&mut self) {
        if self.compute.is_running() {
            self.compute.cancel();
            self.status = "Cancelling…".into();
        }
    }

    /// Whether `op`'s toolpath was computed with what the operation, its tool and the stock
    /// say now (and, for rest roughing, from the toolpaths the operations before it have now).
    pub fn is_outdated(&self, op_id: u64) -> bool {
        let (Some(r), Some(op), Some(model)) = (
            self.results.get(&op_id),
            self.doc.operations.get(op_id),
            &self.doc.model,
        ) else {
            return false;
        };
        if !r.computed.rest_from.is_empty() || r.computed.planned.rest().is_some() {
            let before: Vec<u64> = self
                .doc
                .operations
                .list
                .iter()
                .take_while(|o| o.id != op_id)
                .filter(|o| o.enabled)
                .map(|o| o.id)
                .collect();
            let same = before.len() == r.computed.rest_from.len()
                && before
                    .iter()
                    .zip(&r.computed.rest_from)
                    .all(|(id, (was, tp))| {
                        id == was
                            && self
                                .results
                                .get(id)
                                .is_some_and(|now| Arc::ptr_eq(&now.computed.toolpath, tp))
                    });
            if !same {
                return true;
            }
        }
        operations::plan(
            op,
            &self.doc.tools,
            model,
            &self.doc.stock,
            self.prefs.rapid_rate,
        )
        .map_or(true, |p| !p.same_toolpath(&r.computed.planned))
    }

    /// Segments of the preview the 3D view holds for `op_id` (an operation being computed).
    pub fn preview_in_view(&self, op_id: u64) -> Option<usize> {
        self.view.preview_segments(op_id)
    }

    /// The operation drawn up to a move, if any.
    pub fn inspected_operation(&self) -> Option<u64> {
        self.inspect_until.map(|(op, _)| op)
    }

    /// The move the selected operation's toolpath is drawn up to (1-based; 0: none of it),
    /// when it is not drawn whole.
    pub fn inspected_move(&self, op_id: u64) -> Option<u32> {
        self.inspect_until
            .filter(|(op, _)| *op == op_id)
            .map(|(_, n)| n)
    }

    /// Draws `op_id`'s toolpath up to move `n` (1-based) with its tool there, or whole
    /// (`None`). Other toolpaths stay whole.
    pub fn inspect_move(&mut self, op_id: u64, n: Option<u32>) {
        let Some(r) = self.results.get(&op_id) else {
            return;
        };
        let tp = &r.computed.toolpath;
        let n = n.filter(|&n| (n as usize) < tp.moves.len());
        self.inspect_until = n.map(|n| (op_id, n));
        self.view.inspect.until = self.inspect_until;
        let tool = n.map(|n| {
            let at = match n {
                0 => tp.start,
                n => tp.moves[n as usize - 1].to,
            };
            (at, r.computed.planned.cutter)
        });
        self.view.set_tool_at(tool);
    }

    /// The inspected move as the program writes it: "Move 12 of 340: G1 X… Y… Z… (cut)", in
    /// the program's coordinates (from its work zero).
    pub fn inspected_move_line(&self, op_id: u64) -> Option<String> {
        let n = self.inspected_move(op_id)?;
        let r = self.results.get(&op_id)?;
        let tp = &r.computed.toolpath;
        let zero = self
            .view
            .work_zero()
            .map_or(millpond_core::Point3::new(0.0, 0.0, 0.0), |z| z.0);
        let (word, kind, to) = match n {
            0 => ("start", "", tp.start),
            n => {
                let m = &tp.moves[n as usize - 1];
                match m.kind {
                    millpond_core::toolpath::MoveKind::Rapid => ("G0", " (rapid)", m.to),
                    millpond_core::toolpath::MoveKind::Plunge => ("G1", " (plunge)", m.to),
                    millpond_core::toolpath::MoveKind::Cut => ("G1", " (cut)", m.to),
                }
            }
        };
        let p = to - zero;
        Some(format!(
            "Move {n} of {}: {word} X{:.3} Y{:.3} Z{:.3}{kind}",
            tp.moves.len(),
            p.x,
            p.y,
            p.z
        ))
    }

    /// Draws only what of the toolpaths reaches between these heights (model Z), or every
    /// height (`None`).
    pub fn inspect_heights(&mut self, z: Option<(f64, f64)>) {
        self.view.inspect.z = z.map_or((f32::NEG_INFINITY, f32::INFINITY), |(lo, hi)| {
            (lo as f32, hi as f32)
        });
        self.inspect_z = z;
    }

    /// The heights drawn, when not all.
    pub fn inspected_heights(&self) -> Option<(f64, f64)> {
        self.inspect_z
    }

    /// The lowest and highest Z of `op_id`'s toolpath, as the 3D view measured it.
    pub fn toolpath_heights(&self, op_id: u64) -> Option<(f64, f64)> {
        let b = self.view.toolpath_bounds(op_id)?;
        (!b.is_empty()).then_some((b.min.z, b.max.z))
    }

    pub fn toolpath(&self, op_id: u64) -> Option<&Arc<Toolpath>> {
        self.results.get(&op_id).map(|r| &r.computed.toolpath)
    }

    pub fn set_visible(&mut self, op_id: u64, visible: bool) {
        if let Some(op) = self.doc.operations.get(op_id) {
            let mut op = op.clone();
            op.visible = visible;
            self.execute(Command::EditOperation(Box::new(op)));
        }
    }

    pub fn remove_operation(&mut self, op_id: u64) {
        self.execute(Command::RemoveOperation(op_id));
    }

    // ----- export -----

    /// The post the job names, if there is one and it can write the job's units.
    pub fn post(&self) -> Result<PostProcessor, String> {
        self.posts
            .for_output(&self.doc.output)
            .map_err(|e| e.to_string())
    }

    /// The program Export writes: the enabled operations that have toolpaths, in machining
    /// order, planned as they were computed, in the document's stock, zero and output.
    /// `None` without a model (or a stock that cannot be set up around it).
    pub fn export_program(&self) -> Option<export::Job> {
        let model = self.doc.model.as_ref()?;
        let setup = Setup::new(model.mesh.hash(), model.bounds(), &self.doc.stock).ok()?;
        let mut ops = Vec::new();
        let mut toolpaths = Vec::new();
        let mut times = Vec::new();
        for (k, o) in self.doc.operations.list.iter().enumerate() {
            let Some(r) = self.results.get(&o.id).filter(|_| o.enabled) else {
                continue;
            };
            // The name as it is now: renaming changes the comment, not the moves.
            let planned = PlannedOp {
                name: o.name.clone(),
                ..r.computed.planned.clone()
            };
            ops.push((k, planned));
            toolpaths.push(r.computed.toolpath.clone());
            times.push(r.time);
        }
        let zero = Some(program::work_zero(self.doc.stock.zero, &setup));
        let post = self.post().ok()?;
        Some(export::Job {
            program: Program {
                title: self.export_title().0,
                post,
                units: self.doc.output.units,
                spindle_dwell_s: self.doc.output.spindle_dwell_s,
                setup,
                zero,
                ops,
            },
            toolpaths,
            mesh: model.mesh.clone(),
            index: model.index.clone(),
            times,
            machine: self.prefs.machine(),
        })
    }

    /// Simulate: machines the program Export would write into the stock, off the UI thread,
    /// and shows what it leaves (a running simulation is cancelled first).
    pub fn simulate(&mut self) {
        let Some(model) = self.doc.model.as_ref() else {
            return;
        };
        let (mesh, index) = (model.mesh.clone(), model.index.clone());
        if let Some(job) = self.export_program().filter(|j| !j.program.ops.is_empty()) {
            let backend = self.backend();
            self.simulation.start(&self.ctx, job, mesh, index, backend);
        }
    }

    pub fn export_summary(&self) -> Summary {
        self.export_program()
            .map_or_else(Summary::default, |job| export::summarize(&job))
    }

    fn export_title(&self) -> (String, String) {
        let name = self.doc.model.as_ref().map_or("part", |m| m.name.as_str());
        let stem = std::path::Path::new(name)
            .file_stem()
            .map_or_else(|| "part".into(), |s| s.to_string_lossy().into_owned());
        (name.to_string(), stem)
    }

    /// The program to export, or `None` with a banner saying why there is none.
    fn program_to_export(&mut self) -> Option<export::Job> {
        let job = self.export_program().filter(|j| !j.program.ops.is_empty());
        if job.is_none() {
            self.banners
                .push("Nothing to export: generate an enabled operation first.".into());
        }
        job
    }

    /// Asks where to save, then writes the program.
    pub fn export_dialog(&mut self) {
        let Some(job) = self.program_to_export() else {
            return;
        };
        let (_, stem) = self.export_title();
        self.exporter
            .start(&self.ctx, self.prefs.file_browser, &stem, job);
    }

    /// Writes the program to `path` (no dialog), off the UI thread.
    pub fn export_to(&mut self, path: PathBuf) {
        if let Some(job) = self.program_to_export() {
            self.exporter.write_to(&self.ctx, path, job);
        }
    }

    // ----- preferences and the pool -----

    /// Saves the edited preferences and brings the pool in line with them.
    pub fn apply_preferences(&mut self) {
        let machine_changed = self.prefs.machine() != self.prefs_ui.edit.machine();
        self.prefs = self.prefs_ui.edit.clone();
        if machine_changed {
            let machine = self.prefs.machine();
            for r in self.results.values_mut() {
                let c = &r.computed;
                r.time = estimate_time(&c.toolpath, &c.planned.feeds, &machine);
            }
        }
        self.prefs_ui.message = Some(
            self.prefs
                .save(&self.options.config_dir)
                .map(|()| "Saved.".to_string()),
        );
        self.pool.apply(&self.prefs, self.secret.as_ref());
    }

    /// Uses and saves `secret` (file readable only by you), restarting the pool if it runs.
    pub fn set_secret(&mut self, secret: Secret) {
        match preferences::save_secret(&self.options.config_dir, &secret) {
            Ok(()) => {
                self.prefs_ui.message = Some(Ok(format!(
                    "Secret saved in {} (readable only by you).",
                    self.options
                        .config_dir
                        .join(preferences::SECRET_FILE)
                        .display()
                )));
                self.secret = Some(secret);
                self.pool.apply(&self.prefs, self.secret.as_ref());
            }
            Err(e) => self.prefs_ui.message = Some(Err(e)),
        }
    }

    pub fn set_server_mode(&mut self, on: bool) {
        self.prefs_ui.edit.server_mode = on;
        self.apply_preferences();
    }

    pub fn add_remote(&mut self, address: &str) {
        match preferences::check_remote(address) {
            Ok(a) => {
                if !self.prefs_ui.edit.remote_servers.contains(&a) {
                    self.prefs_ui.edit.remote_servers.push(a);
                }
                self.prefs_ui.new_remote.clear();
                self.apply_preferences();
            }
            Err(e) => self.prefs_ui.message = Some(Err(e)),
        }
    }

    pub fn remove_remote(&mut self, address: &str) {
        self.prefs_ui.edit.remote_servers.retain(|r| r != address);
        self.apply_preferences();
    }

    // ----- every frame -----

    /// Drains what the background threads reported.
    pub fn poll(&mut self) {
        if let Some(outcome) = self.loader.poll() {
            match outcome {
                LoadOutcome::Loaded(m) => self.model_arrived(*m),
                LoadOutcome::Failed {
                    name,
                    path,
                    message,
                } => {
                    let kept = self
                        .doc
                        .model
                        .as_ref()
                        .map_or(String::new(), |m| format!(" {} stays loaded.", m.name));
                    self.banners
                        .push(format!("Cannot open {name}: {message}.{kept}"));
                    if let Some(p) = path {
                        self.session.recent.retain(|r| r != &p);
                    }
                    self.opening_job = None;
                    self.status = format!("Cannot open {name}");
                }
            }
        }
        for ev in self.compute.poll() {
            match ev {
                ComputeEvent::Finished(c) => {
                    let stats = c.toolpath.stats(&c.planned.feeds);
                    let current_model = self.doc.model.as_ref().map(|m| m.generation);
                    if Some(c.generation) != current_model {
                        continue;
                    }
                    let visible = self.doc.operations.get(c.op_id).is_some_and(|o| o.visible);
                    // Replaces the preview too, once the toolpath is uploaded.
                    self.view.set_toolpath(c.op_id, &c.toolpath, visible);
                    if self.preview_sent.is_some_and(|(op, ..)| op == c.op_id) {
                        self.preview_sent = None;
                    }
                    let name = self
                        .doc
                        .operations
                        .get(c.op_id)
                        .map_or_else(String::new, |o| o.name.clone());
                    self.status = format!("{name}: {} moves in {:.1} s", stats.moves, c.elapsed_s);
                    self.op_errors.remove(&c.op_id);
                    self.results.insert(
                        c.op_id,
                        OpResult {
                            time: estimate_time(
                                &c.toolpath,
                                &c.planned.feeds,
                                &self.prefs.machine(),
                            ),
                            computed: *c,
                            stats,
                        },
                    );
                }
                ComputeEvent::Failed {
                    op_id,
                    name,
                    message,
                } => {
                    self.banners.push(format!("{name} failed: {message}"));
                    self.op_errors.insert(op_id, message);
                    self.status = format!("{name} failed");
                }
                ComputeEvent::Cancelled { name, latency } => {
                    self.status = format!(
                        "Cancelled {name} (workers stopped {:.0} ms after the click)",
                        latency.as_secs_f64() * 1e3
                    );
                }
            }
        }
        self.sync_preview();
        self.exporter.poll();
        self.detached.poll();
        self.detached.refresh_if_due(self.secret.as_ref());
        let legend: Vec<(u64, String)> = self
            .doc
            .operations
            .list
            .iter()
            .map(|o| (o.id, o.name.clone()))
            .collect();
        self.view.set_legend(&legend);
        let program = self.export_program();
        self.program_check.update(&self.ctx, program.as_ref());
        if self.simulation.poll()
            && let Some(Ok(sim)) = &self.simulation.last
        {
            self.view.set_simulated_stock(Some(sim.surface.clone()));
            self.simulation.playback = self.doc.model.as_ref().and_then(|m| {
                super::simulation::Playback::new(&self.ctx, sim, m.mesh.clone(), m.index.clone())
                    .ok()
            });
        }
        // A regenerated, added or removed operation: the simulated stock is of another
        // program now.
        if matches!(self.simulation.last, Some(Ok(_)))
            && !self.simulation.is_current(program.as_ref())
        {
            self.simulation.last = None;
            self.simulation.playback = None;
            self.view.set_simulated_stock(None);
            self.view.set_tool_at(None);
        }
        if let Some(pb) = &mut self.simulation.playback {
            let dt = f64::from(self.ctx.input(|i| i.stable_dt));
            pb.advance(dt);
            if pb.playing {
                self.ctx.request_repaint();
            }
            if let Some(frame) = pb.poll() {
                let end = frame.at.op + 1 == pb.lengths.len()
                    && frame.at.moves == pb.lengths[frame.at.op];
                self.view.set_simulated_stock(Some(frame.surface));
                self.view.set_tool_at((!end).then_some(frame.tool));
            }
        }
        self.pool.poll();
        if let Some(t) = self.autostart_at
            && self.autostart_ready(t)
        {
            self.autostart_at = None;
            self.generate(true);
        }
        self.compute.sample(Duration::from_millis(250));
        // The pool's figures are asked for at most every 250 ms; this computer's own progress
        // (a chunk done, a job started or finished) shows at once, so the panel never lags
        // behind what the status bar says.
        let progress = (
            self.compute.is_running(),
            self.compute
                .current()
                .map(|c| (c.op_id, c.progress.chunks_done)),
            self.compute.finished.len(),
        );
        if let Some(pool) = self.pool.pool() {
            let node = pool.id().0;
            let seen = if self.pool_notice_seen.0 == node {
                self.pool_notice_seen.1
            } else {
                0
            };
            for n in pool.notices_after(seen) {
                self.pool_notice_seen = (node, n.seq);
                self.status = format!("Pool: {}", n.text);
            }
        }
        let refresh_due = self.stats_progress != Some(progress)
            || self
                .last_refresh
                .is_none_or(|t| t.elapsed() >= Duration::from_millis(250));
        if refresh_due && (self.stats.visible || self.prefs_ui.open) {
            self.last_refresh = Some(Instant::now());
            self.stats_progress = Some(progress);
            self.pool_stats = self.pool.pool().map(|p| p.stats());
            self.stats.refresh(
                self.pool_stats.as_ref(),
                &self.prefs.node_name,
                self.prefs.local_workers,
                &self.compute,
            );
        }
        if let Some(t) = self.tools_changed
            && t.elapsed() > Duration::from_secs(1)
        {
            self.save_tools();
        }
        match self.recovery_due {
            Some(t) if Instant::now() >= t => self.write_recovery(),
            Some(t) => self
                .ctx
                .request_repaint_after(t.saturating_duration_since(Instant::now())),
            None => {}
        }
        let title = window_title(
            self.job_name().as_deref(),
            self.is_dirty(),
            self.doc.model.as_ref().map(|m| m.name.as_str()),
        );
        if title != self.title {
            self.ctx
                .send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// Brings the 3D view's preview in line with what the running operation has computed:
    /// the first chunk at once, then at most every [`PREVIEW_EVERY`] (each upload prepares the
    /// whole preview again, so a million-point job is re-sent a few times a second, not every
    /// frame). A preview whose operation is over without a toolpath (cancelled, failed, for
    /// a replaced model) is dropped, and the operation's previous toolpath shows again.
    ///
    /// A previous toolpath of the operation stays drawn until the new run's first chunk
    /// arrives; from then on the preview is drawn instead of it.
    fn sync_preview(&mut self) {
        let want = self.compute.preview();
        if let Some((op, ..)) = self.preview_sent
            && want.is_none_or(|p| p.op_id != op)
        {
            self.view.remove_preview(op);
            self.preview_sent = None;
        }
        let Some(p) = want else {
            return;
        };
        let due = match self.preview_sent {
            None => true,
            Some((_, chunks, at)) => p.chunks > chunks && at.elapsed() >= PREVIEW_EVERY,
        };
        if due {
            let visible = self.doc.operations.get(p.op_id).is_some_and(|o| o.visible);
            self.view.set_preview(p.op_id, &p.lines, p.bounds, visible);
            self.preview_sent = Some((p.op_id, p.chunks, Instant::now()));
        } else {
            // Come back for the chunks that arrived meanwhile even if nothing else repaints.
            self.ctx.request_repaint_after(PREVIEW_EVERY);
        }
    }

    pub fn autostart_pending(&self) -> bool {
        self.autostart_at.is_some()
    }

    /// In server mode an autostarted job waits (up to 10 s) for the pool and a remote link, so
    /// that it is shared like a job started by hand once the pool is up.
    fn autostart_ready(&mut self, asked: Instant) -> bool {
        if !self.prefs.server_mode || asked.elapsed() > Duration::from_secs(10) {
            return true;
        }
        match self.pool.state() {
            PoolState::Running(p) => {
                let s = p.stats();
                s.remotes.is_empty()
                    || s.remotes
                        .iter()
                        .any(|r| r.state == millpond_net::RemoteState::Connected)
            }
            PoolState::Failed(_) | PoolState::Off => true,
            PoolState::Starting | PoolState::Stopping => false,
        }
    }

    pub(super) fn tools_edited(&mut self) {
        self.tools_changed = Some(Instant::now());
    }

    fn save_tools(&mut self) {
        self.tools_changed = None;
        let path = self.options.config_dir.join(TOOLS_FILE);
        if let Err(e) = save_json(&path, &self.doc.tools) {
            self.banners.push(format!(
                "Cannot save the tool library to {}: {e}",
                path.display()
            ));
        }
    }

    pub(super) fn save_session(&mut self) {
        self.session.show_stats = self.stats.visible;
        let path = self.options.config_dir.join(SESSION_FILE);
        if let Err(e) = save_json(&path, &self.session) {
            tracing::warn!("cannot save {}: {e}", path.display());
        }
    }

    /// Everything that must be written before the process ends.
    pub fn save_all(&mut self) {
        self.save_tools();
        self.save_session();
    }

    /// Quitting: cancel computing, leave the pool (peers see the close at once), and never
    /// wait for it more than [`QUIT_POOL_WAIT`].
    pub fn shutdown(&mut self) {
        self.compute.cancel();
        self.pool.shutdown_by(Instant::now() + QUIT_POOL_WAIT);
    }
}
