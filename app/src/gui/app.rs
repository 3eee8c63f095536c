//! [`MillpondApp`]: the state of the window and what the buttons do.
//!
//! Everything here is plain data with methods (tests call them directly or click the
//! buttons that call them); drawing lives in `ui.rs`. Background work — loading, computing,
//! dialogs, export, the pool — reports over channels that [`MillpondApp::poll`] drains once
//! per frame.

use super::check::ProgramCheck;
use super::compute::{Backend, Compute, ComputeEvent, Computed, JobRequest};
use super::dialogs::{self, PendingDialog};
use super::export::{self, ExportOp, Exporter, Summary};
use super::model::{LoadOutcome, Model, ModelLoader, Placement, Units, display_name};
use super::operations::{self, Operations, Stock, Strategy, ToolLibrary};
use super::preferences::{self, PoolControl, PoolState, Preferences, QUIT_POOL_WAIT};
use super::settings::{load_json, save_json};
use super::stats_panel::StatsPanel;
use super::view3d::SceneView;
use crate::cli::{DEFAULT_MODEL, DEFAULT_MODEL_NAME};
use egui::DroppedFileHandle;
use millpond_core::gcode::Dialect;
use millpond_core::planner::estimate_time;
use millpond_core::toolpath::ToolpathStats;
use millpond_core::{Aabb, TimeEstimate, Toolpath};
use millpond_net::{PoolStats, Secret};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Window title for a model.
pub fn window_title(model_name: Option<&str>) -> String {
    match model_name {
        Some(n) => format!("Millpond — {n}"),
        None => "Millpond".into(),
    }
}

const TOOLS_FILE: &str = "tools.json";
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
    /// Most recent first.
    pub recent: Vec<PathBuf>,
    pub dialect: Dialect,
    pub show_stats: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            recent: Vec::new(),
            dialect: Dialect::LinuxCnc,
            show_stats: false,
        }
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
#[derive(Debug, Default)]
pub struct PrefsUi {
    pub open: bool,
    /// The editable copy; applied (saved, pool restarted) by "Save and apply", the server
    /// mode switch, and adding or removing a remote server.
    pub edit: Preferences,
    pub show_secret: bool,
    pub secret_text: String,
    pub new_remote: String,
    pub message: Option<Result<String, String>>,
}

pub struct MillpondApp {
    pub options: AppOptions,
    pub model: Option<Model>,
    pub loader: ModelLoader,
    /// Errors shown at the top of the window until dismissed.
    pub banners: Vec<String>,
    pub session: Session,
    pub tools: ToolLibrary,
    pub selected_tool: Option<u64>,
    pub operations: Operations,
    pub stock: Stock,
    pub results: BTreeMap<u64, OpResult>,
    /// The last failure of each operation.
    pub op_errors: BTreeMap<u64, String>,
    pub compute: Compute,
    /// The saved, applied preferences.
    pub prefs: Preferences,
    pub prefs_ui: PrefsUi,
    pub secret: Option<Secret>,
    pub pool: PoolControl,
    pub pool_stats: Option<PoolStats>,
    pub stats: StatsPanel,
    pub exporter: Exporter,
    /// The program checked against the stock: warnings shown before export.
    pub program_check: ProgramCheck,
    /// The last thing that happened, for the status bar.
    pub status: String,
    pub(super) view: SceneView,
    pub(super) open_dialog: Option<PendingDialog>,
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
            .field("model", &self.model.as_ref().map(|m| &m.name))
            .field("operations", &self.operations.list.len())
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
        let mut operations = Operations::with_default(&tools);
        if options.autostart == Autostart::Heavy
            && let Some(op) = operations
                .list
                .iter_mut()
                .find(|o| matches!(o.strategy, Strategy::RasterFinishing(_)))
            && let Strategy::RasterFinishing(p) = &mut op.strategy
        {
            p.stepover = 0.01;
            p.sampling = 0.01;
            op.name = "Fine raster (autostart)".into();
        }
        let mut app = Self {
            loader: ModelLoader::new(ctx.clone()),
            model: None,
            banners,
            selected_tool: tools.tools.first().map(|t| t.id),
            tools,
            operations,
            stock: Stock::default(),
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
            stats: StatsPanel {
                visible: session.show_stats,
                ..StatsPanel::default()
            },
            session,
            exporter: Exporter::default(),
            program_check: ProgramCheck::default(),
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
        match app.options.open.clone() {
            // Loaded off the UI thread like File > Open; a file that cannot be read leaves the
            // window empty with the reason in a banner.
            Some(path) => app.open_path(path),
            None => match ModelLoader::load_bundled_now(DEFAULT_MODEL, DEFAULT_MODEL_NAME) {
                Ok(m) => app.set_model(m),
                Err(e) => app.banners.push(e),
            },
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
        if let Some(d) = &mut self.open_dialog {
            let answer = d.show(ctx);
            if let Some(notice) = d.take_notice() {
                tracing::info!("{notice}");
                self.status = notice;
            }
            if let Some(answer) = answer {
                self.open_dialog = None;
                match answer {
                    Some(path) => self.open_path(path),
                    None => {
                        self.status =
                            "No file chosen. You can also drop an STL file on the window.".into();
                    }
                }
            }
        }
        if let Some(notice) = self.exporter.show_dialog(ctx) {
            tracing::info!("{notice}");
            self.status = notice;
        }
    }

    /// Asks for a model file with the desktop's dialog (or the built-in browser).
    pub fn open_dialog(&mut self) {
        if self.open_dialog.is_none() {
            let start = self
                .session
                .recent
                .first()
                .and_then(|p| p.parent())
                .map(std::path::Path::to_path_buf);
            self.open_dialog = Some(dialogs::open_model(
                &self.ctx,
                self.prefs.file_browser,
                start,
                dialogs::folders_of(&self.session.recent),
            ));
        }
    }

    pub fn set_units(&mut self, units: Units) {
        if let Some(m) = &self.model
            && m.units != units
        {
            self.loader.replace(m, units, m.placement.clone());
        }
    }

    pub fn place(&mut self, step: Placement) {
        if let Some(m) = &self.model {
            let mut placement = m.placement.clone();
            placement.push(step);
            self.loader.replace(m, m.units, placement);
        }
    }

    pub fn reset_placement(&mut self) {
        if let Some(m) = &self.model {
            self.loader.replace(m, m.units, Vec::new());
        }
    }

    fn set_model(&mut self, mut model: Model) {
        self.model_generation += 1;
        model.generation = self.model_generation;
        // Toolpaths of another placement or part are void; a running batch computes for the
        // old mesh, so it stops too.
        self.compute.cancel();
        for id in self.results.keys() {
            self.view.remove_toolpath(*id);
        }
        self.results.clear();
        self.op_errors.clear();
        self.view.set_model(&model.mesh);
        if let Some(path) = &model.path {
            self.session.recent.retain(|p| p != path);
            self.session.recent.insert(0, path.clone());
            self.session.recent.truncate(MAX_RECENT);
            self.save_session();
        }
        self.status = format!("{}: {} triangles", model.name, model.triangles());
        self.model = Some(model);
        // The stock follows the model (margins) or stays (explicit): sent after the model.
        self.sync_stock();
        self.view.fit();
    }

    /// What the 3D view draws besides the cuts (its Model, Stock and Rapids boxes).
    pub fn view_layers(&mut self) -> &mut super::view3d::Layers {
        &mut self.view.layers
    }

    /// The stock box the 3D view shows.
    pub fn stock_shown(&self) -> Option<Aabb> {
        self.sent_stock
    }

    /// Sends the stock box to the 3D view when it changed.
    pub(super) fn sync_stock(&mut self) {
        let b = self.model.as_ref().map(|m| self.stock.aabb(m.bounds()));
        if b != self.sent_stock {
            self.view.set_stock(b);
            self.sent_stock = b;
        }
    }

    // ----- computing -----

    /// Plans and starts the selected operation (`all == false`) or every enabled one, in
    /// order. Problems (no model, a bad parameter) show in the banner and per operation.
    pub fn generate(&mut self, all: bool) {
        let Some(model) = &self.model else {
            self.banners.push("Open a model first.".into());
            return;
        };
        let ids: Vec<u64> = if all {
            self.operations
                .list
                .iter()
                .filter(|o| o.enabled)
                .map(|o| o.id)
                .collect()
        } else {
            self.operations.selected.into_iter().collect()
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
        for id in ids {
            let Some(op) = self.operations.get(id) else {
                continue;
            };
            match operations::plan(op, &self.tools, model, &self.stock, self.prefs.rapid_rate) {
                Ok(planned) => {
                    self.op_errors.remove(&id);
                    jobs.push(JobRequest {
                        op_id: id,
                        name: op.name.clone(),
                        mesh: model.mesh.clone(),
                        index: model.index.clone(),
                        planned,
                        generation: model.generation,
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
        let backend = match self.pool.pool() {
            Some(p) => Backend::Pool {
                pool: Arc::downgrade(p),
                workers: self.prefs.local_workers.max(1),
            },
            None => Backend::Local {
                threads: self.prefs.local_workers.max(1),
            },
        };
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

    pub fn cancel(&mut self) {
        if self.compute.is_running() {
            self.compute.cancel();
            self.status = "Cancelling…".into();
        }
    }

    /// Whether `op`'s toolpath was computed with what the operation, its tool and the stock
    /// say now.
    pub fn is_outdated(&self, op_id: u64) -> bool {
        let (Some(r), Some(op), Some(model)) = (
            self.results.get(&op_id),
            self.operations.get(op_id),
            &self.model,
        ) else {
            return false;
        };
        operations::plan(op, &self.tools, model, &self.stock, self.prefs.rapid_rate)
            .map_or(true, |p| p != r.computed.planned)
    }

    /// Segments of the preview the 3D view holds for `op_id` (an operation being computed).
    pub fn preview_in_view(&self, op_id: u64) -> Option<usize> {
        self.view.preview_segments(op_id)
    }

    pub fn toolpath(&self, op_id: u64) -> Option<&Arc<Toolpath>> {
        self.results.get(&op_id).map(|r| &r.computed.toolpath)
    }

    pub fn set_visible(&mut self, op_id: u64, visible: bool) {
        if let Some(op) = self.operations.get_mut(op_id) {
            op.visible = visible;
            self.view.set_toolpath_visible(op_id, visible);
        }
    }

    pub fn remove_operation(&mut self, op_id: u64) {
        self.operations.remove(op_id);
        if self.results.remove(&op_id).is_some() {
            self.view.remove_toolpath(op_id);
        }
        self.op_errors.remove(&op_id);
    }

    // ----- export -----

    /// Enabled operations with toolpaths, in machining order.
    pub fn export_ops(&self) -> Vec<ExportOp> {
        self.operations
            .list
            .iter()
            .filter(|o| o.enabled)
            .filter_map(|o| {
                let r = self.results.get(&o.id)?;
                let p = &r.computed.planned;
                Some(ExportOp {
                    name: o.name.clone(),
                    tool_number: p.tool.number,
                    cutter: p.spec.cutter,
                    feeds: p.feeds,
                    safe_z: p.safe_z,
                    spindle_dwell_s: self.prefs.spindle_dwell_s,
                    max_depth_of_cut: p.tool.max_depth_of_cut(&p.spec.cutter),
                    toolpath: r.computed.toolpath.clone(),
                    time: r.time,
                })
            })
            .collect()
    }

    pub fn export_summary(&self) -> Summary {
        export::summarize(&self.export_ops())
    }

    fn export_title(&self) -> (String, String) {
        let name = self.model.as_ref().map_or("part", |m| m.name.as_str());
        let stem = std::path::Path::new(name)
            .file_stem()
            .map_or_else(|| "part".into(), |s| s.to_string_lossy().into_owned());
        (name.to_string(), stem)
    }

    /// Asks where to save, then writes the program.
    pub fn export_dialog(&mut self) {
        let ops = self.export_ops();
        if ops.is_empty() {
            self.banners
                .push("Nothing to export: generate an enabled operation first.".into());
            return;
        }
        let (title, stem) = self.export_title();
        let job = self.export_job(title, ops);
        self.exporter
            .start(&self.ctx, self.prefs.file_browser, &stem, job);
    }

    fn export_job(&self, title: String, ops: Vec<ExportOp>) -> export::Job {
        let zero = match (&self.model, self.sent_stock) {
            (Some(m), Some(stock)) => Some(millpond_core::gcode::WorkZero {
                at: self.stock.zero.point(stock, m.bounds()),
                description: self.stock.zero.describe(),
            }),
            _ => None,
        };
        export::Job {
            dialect: self.session.dialect,
            title,
            stock: self.sent_stock,
            zero,
            machine: self.prefs.machine(),
            ops,
        }
    }

    /// Writes the program to `path` (no dialog), off the UI thread.
    pub fn export_to(&mut self, path: PathBuf) {
        let (title, _) = self.export_title();
        let job = self.export_job(title, self.export_ops());
        self.exporter.write_to(&self.ctx, path, job);
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
                LoadOutcome::Loaded(m) => self.set_model(*m),
                LoadOutcome::Failed {
                    name,
                    path,
                    message,
                } => {
                    let kept = self
                        .model
                        .as_ref()
                        .map_or(String::new(), |m| format!(" {} stays loaded.", m.name));
                    self.banners
                        .push(format!("Cannot open {name}: {message}.{kept}"));
                    if let Some(p) = path {
                        self.session.recent.retain(|r| r != &p);
                    }
                    self.status = format!("Cannot open {name}");
                }
            }
        }
        for ev in self.compute.poll() {
            match ev {
                ComputeEvent::Finished(c) => {
                    let stats = c.toolpath.stats(&c.planned.feeds);
                    let current_model = self.model.as_ref().map(|m| m.generation);
                    if Some(c.generation) != current_model {
                        continue;
                    }
                    let visible = self.operations.get(c.op_id).is_some_and(|o| o.visible);
                    // Replaces the preview too, once the toolpath is uploaded.
                    self.view.set_toolpath(c.op_id, &c.toolpath, visible);
                    if self.preview_sent.is_some_and(|(op, ..)| op == c.op_id) {
                        self.preview_sent = None;
                    }
                    let name = self
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
        let legend: Vec<(u64, String)> = self
            .operations
            .list
            .iter()
            .map(|o| (o.id, o.name.clone()))
            .collect();
        self.view.set_legend(&legend);
        let ops = self.export_ops();
        self.program_check.update(&self.ctx, self.sent_stock, &ops);
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
        let title = window_title(self.model.as_ref().map(|m| m.name.as_str()));
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
            let visible = self.operations.get(p.op_id).is_some_and(|o| o.visible);
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
        if let Err(e) = save_json(&path, &self.tools) {
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
