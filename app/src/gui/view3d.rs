//! The 3D view: three-d drawing the model, the stock box and toolpaths inside an egui panel.
//!
//! CONTRACT (used by the rest of the GUI; keep these signatures):
//! - `SceneView::new(gl)`: `gl` is `CreationContext::gl`; `None` (egui_kittest, no GL) makes
//!   the view draw only its egui overlay and a note that 3D needs OpenGL.
//! - `set_model`, `set_stock`, `set_toolpath` / `remove_toolpath` / `set_toolpath_visible`
//!   upload or change what is drawn; they are cheap to call only when something changed.
//! - `set_preview` / `remove_preview`: what an operation has computed so far, drawn instead
//!   of its toolpath while present; `set_toolpath` replaces it once the toolpath is uploaded
//!   (no empty frame between the two). Call `set_preview` a few times a second at most: each
//!   call prepares the whole preview again.
//! - `show(ui)` allocates the remaining space, handles orbit/pan/zoom, draws the preset buttons
//!   and schedules the GL paint callback.
//!
//! How it works:
//! - The view's state on the UI thread is the camera ([`camera::OrbitCamera`]) and the bounds
//!   of what is shown. GL objects live in [`gpu::Shared`] behind an `Arc<Mutex<..>>`:
//!   `egui_glow::CallbackFn` must be `Send + Sync`, and three-d's objects are (glow's context
//!   is), so the callback closure holds a clone of the `Arc` and locks it while painting. egui
//!   paints on the UI thread after `show` returns, so the lock is never contended. (A
//!   thread-local would also work, but would tie the GL objects' lifetime to a thread instead
//!   of to the view.)
//! - The `set_*` calls do only cheap work on the UI thread (f32 copies, bounds); indexing a
//!   model and simplifying a toolpath into levels of detail ([`geometry`]) run on a short-lived
//!   thread, whose result waits in `gpu::Inbox` (CPU data only: a thread other than the UI
//!   thread never owns a GL object) with a ticket, so a stale result never replaces a
//!   newer one. The next paint callback, where the context is current and egui's framebuffer
//!   bound, uploads it once; GPU buffers stay until that model or toolpath changes.
//! - Each frame the callback draws into the framebuffer egui paints to with the `_partially`
//!   clear/render calls, using the callback's viewport and clip rectangle as scissor: the
//!   model as a three-d mesh with a matte material (directional light plus a sky/ground
//!   ambient; flat facet normals), the stock and toolpaths as screen-space segment quads
//!   with a small custom shader reading the segments from a float texture. A toolpath is
//!   binned by place into cells; each cell on screen is drawn at the coarsest level of detail
//!   whose error is under half a pixel at its distance, one draw call per chunk (see
//!   [`geometry`] and [`gpu`]): a million-point toolpath costs what is visible, not a million
//!   segments a frame.
//! - The workspace forbids `unsafe`, and every raw glow call is `unsafe`; the view therefore
//!   goes through three-d's safe wrappers only (`Program`, `Texture2D`, `RenderTarget`).

mod camera;
mod geometry;
mod gpu;

pub use gpu::{FrameStats, Inspect};

use camera::OrbitCamera;
use egui::{Align, Layout, PointerButton, Rect, Sense, Ui, UiBuilder, Vec2, vec2};
use millpond_core::{Aabb, Cutter, Mesh, Point3, Toolpath};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Camera presets a machinist expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewPreset {
    Top,
    Front,
    Side,
    Iso,
}

/// Identifies one operation's toolpath in the view.
pub type ToolpathId = u64;

/// What the view knows about a toolpath on the UI side (the vertices live on the GPU).
#[derive(Clone, Copy, Debug)]
struct ToolpathEntry {
    bounds: Aabb,
    visible: bool,
    segments: usize,
}

pub struct SceneView {
    /// `None` without GL: only the overlay is drawn.
    shared: Option<Arc<Mutex<gpu::Shared>>>,
    /// Prepared vertex data waiting for the next paint.
    inbox: Arc<Mutex<gpu::Inbox>>,
    /// Threads preparing vertex data; joined by [`Self::wait_for_uploads`], pruned in `show`.
    workers: Vec<JoinHandle<()>>,
    /// The egui context to wake when prepared data is ready (known from the first `show`).
    repaint: Arc<Mutex<Option<egui::Context>>>,
    camera: OrbitCamera,
    model: Option<(Aabb, usize)>,
    /// A simulated stock is shown instead of the model.
    simulated: bool,
    stock: Option<Aabb>,
    work_zero: Option<(Point3, f64)>,
    tool_at: Option<(Point3, Cutter)>,
    /// Which moves and heights of the toolpaths are drawn.
    pub inspect: gpu::Inspect,
    toolpaths: BTreeMap<ToolpathId, ToolpathEntry>,
    /// Previews of operations being computed.
    previews: BTreeMap<ToolpathId, ToolpathEntry>,
    /// Set by `fit()`; done in `show`, once the view's aspect ratio is known.
    fit_pending: bool,
    /// What the view's check boxes show.
    pub layers: Layers,
    /// Each operation's name and cut colour, in machining order: the legend.
    legend: Vec<(ToolpathId, String, [f32; 4])>,
}

/// What the view draws: the model, the stock, and each kind of move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub model: bool,
    /// The simulated stock, when there is one, instead of the model.
    pub simulated: bool,
    pub stock: bool,
    pub rapids: bool,
    pub plunges: bool,
    pub cuts: bool,
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            model: true,
            simulated: true,
            stock: true,
            rapids: true,
            plunges: true,
            cuts: true,
        }
    }
}

/// Cut colours of the operations, in machining order (sRGB): distinct from each other and
/// from the rapids' yellow and the plunges' orange-red.
pub const OPERATION_COLORS: [[f32; 4]; 6] = [
    [0.26, 0.55, 1.0, 1.0],
    [0.30, 0.80, 0.45, 1.0],
    [0.80, 0.45, 0.95, 1.0],
    [0.20, 0.85, 0.85, 1.0],
    [0.95, 0.55, 0.75, 1.0],
    [0.70, 0.75, 0.30, 1.0],
];

impl std::fmt::Debug for SceneView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SceneView")
            .field("gl", &self.shared.is_some())
            .field("workers", &self.workers.len())
            .field("camera", &self.camera)
            .field("model", &self.model)
            .field("stock", &self.stock)
            .field("toolpaths", &self.toolpaths)
            .field("previews", &self.previews)
            .finish()
    }
}

/// Preparation threads running in this process, over all views.
static PREPARING: AtomicUsize = AtomicUsize::new(0);

/// How many models and toolpaths are still being prepared off the UI thread, in all views of
/// this process. Tests that drive a whole app (and cannot reach its view) wait for zero before
/// taking a snapshot; see also [`SceneView::wait_for_uploads`].
pub fn preparing() -> usize {
    PREPARING.load(Ordering::SeqCst)
}

/// Counts a preparation thread from before it starts until it has delivered (or panicked).
struct Preparing;

impl Preparing {
    fn start() -> Self {
        PREPARING.fetch_add(1, Ordering::SeqCst);
        Preparing
    }
}

impl Drop for Preparing {
    fn drop(&mut self) {
        PREPARING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Poisoning only means another thread panicked while holding the lock; the data is still
/// usable (at worst a change is missing), and the view must not take the UI down with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SceneView {
    pub fn new(gl: Option<Arc<egui_glow::glow::Context>>) -> Self {
        // The GL context itself is not kept: the paint callback gets it from egui's painter.
        Self {
            shared: gl.map(|_| Arc::new(Mutex::new(gpu::Shared::default()))),
            inbox: Arc::new(Mutex::new(gpu::Inbox::default())),
            workers: Vec::new(),
            repaint: Arc::new(Mutex::new(None)),
            camera: OrbitCamera::default(),
            model: None,
            stock: None,
            work_zero: None,
            tool_at: None,
            inspect: gpu::Inspect::default(),
            toolpaths: BTreeMap::new(),
            previews: BTreeMap::new(),
            fit_pending: true,
            simulated: false,
            layers: Layers::default(),
            legend: Vec::new(),
        }
    }

    /// The operations' names and colours for the legend, in machining order (the colour of
    /// the `k`-th is `OPERATION_COLORS[k % 6]`).
    pub fn set_legend(&mut self, operations: &[(ToolpathId, String)]) {
        self.legend = operations
            .iter()
            .enumerate()
            .map(|(k, (id, name))| {
                (
                    *id,
                    name.clone(),
                    OPERATION_COLORS[k % OPERATION_COLORS.len()],
                )
            })
            .collect();
    }

    /// Whether this view draws with OpenGL (false: overlay and a note only).
    pub fn has_gl(&self) -> bool {
        self.shared.is_some()
    }

    /// Replaces what `slot` shows with the result of `prepare`, computed on its own thread: a
    /// 200k-triangle model or a million-point toolpath takes tens of milliseconds to index or
    /// simplify, which the UI thread must not spend. The result waits in [`gpu::Inbox`] for
    /// the next paint, and a repaint is requested when it is there.
    fn prepare(&mut self, slot: gpu::Slot, prepare: impl FnOnce() -> gpu::Change + Send + 'static) {
        if self.shared.is_none() {
            return;
        }
        let ticket = lock(&self.inbox).request(slot);
        let inbox = Arc::clone(&self.inbox);
        let repaint = Arc::clone(&self.repaint);
        let counted = Preparing::start();
        let spawned = std::thread::Builder::new()
            .name("millpond-view3d".to_string())
            .spawn(move || {
                let _counted = counted;
                let change = prepare();
                lock(&inbox).deliver(slot, ticket, change);
                if let Some(ctx) = lock(&repaint).as_ref() {
                    ctx.request_repaint();
                }
            });
        match spawned {
            Ok(handle) => self.workers.push(handle),
            Err(e) => {
                if let Some(shared) = &self.shared {
                    lock(shared).error = Some(format!("cannot start a 3D view thread: {e}"));
                }
            }
        }
    }

    /// Blocks until every model and toolpath handed to the view is prepared, so the next
    /// frame draws it. For tests and benchmarks; the app never needs to wait.
    pub fn wait_for_uploads(&mut self) {
        for handle in self.workers.drain(..) {
            // A panicked worker delivered nothing: its slot just stays as it was.
            let _ = handle.join();
        }
    }

    /// Shows `mesh` (replacing the previous model) and frames the view on it.
    pub fn set_model(&mut self, mesh: &Mesh) {
        self.model = (!mesh.is_empty()).then(|| (mesh.bounds(), mesh.len()));
        self.fit_pending = true;
        if self.shared.is_some() {
            let corners = geometry::model_corners(mesh);
            self.prepare(gpu::Slot::Model, move || {
                gpu::Change::Model(Some(geometry::model_data(&corners)))
            });
        }
    }

    /// Shows the stock as a simulated program leaves it, coloured by deviation from the
    /// model, instead of the model; `None` shows the model again.
    pub fn set_simulated_stock(
        &mut self,
        surface: Option<Arc<millpond_core::simulate::StockSurface>>,
    ) {
        self.simulated = surface.is_some();
        match surface {
            Some(s) => self.prepare(gpu::Slot::Simulated, move || {
                gpu::Change::Surface(Some(geometry::surface_data(&s)))
            }),
            None => lock(&self.inbox).set(gpu::Slot::Simulated, gpu::Change::Surface(None)),
        }
    }

    /// Whether a simulated stock is shown instead of the model.
    pub fn has_simulated_stock(&self) -> bool {
        self.simulated
    }

    /// Removes the model.
    pub fn clear_model(&mut self) {
        self.model = None;
        lock(&self.inbox).set(gpu::Slot::Model, gpu::Change::Model(None));
    }

    /// Shows the program's zero as an axis marker (X red, Y green, Z blue) with arms of
    /// `length`, or hides it.
    pub fn set_work_zero(&mut self, zero: Option<(Point3, f64)>) {
        let zero = zero.filter(|(p, l)| p.is_finite() && l.is_finite() && *l > 0.0);
        if zero == self.work_zero {
            return;
        }
        self.work_zero = zero;
        if self.shared.is_some() {
            let lines = zero.map(|(p, l)| geometry::axis_lines(p, l));
            lock(&self.inbox).set(gpu::Slot::WorkZero, gpu::Change::Lines(lines));
        }
    }

    /// Draws the cutter with its tip at a point (the inspected move), or nothing.
    pub fn set_tool_at(&mut self, tool: Option<(Point3, Cutter)>) {
        let tool = tool.filter(|(p, _)| p.is_finite());
        if tool == self.tool_at {
            return;
        }
        self.tool_at = tool;
        if self.shared.is_some() {
            let lines = tool.map(|(p, c)| geometry::tool_lines(p, &c, 2.0 * c.diameter()));
            lock(&self.inbox).set(gpu::Slot::Tool, gpu::Change::Lines(lines));
        }
    }

    /// The box of the toolpath shown under `id` (kept when it was set: no pass over its moves).
    pub fn toolpath_bounds(&self, id: ToolpathId) -> Option<Aabb> {
        self.toolpaths.get(&id).map(|t| t.bounds)
    }

    /// Where the tool is drawn (its tip) and which it is.
    pub fn tool_at(&self) -> Option<(Point3, Cutter)> {
        self.tool_at
    }

    /// Where the work-zero marker is and how long its arms are.
    pub fn work_zero(&self) -> Option<(Point3, f64)> {
        self.work_zero
    }

    /// Shows the stock as a wireframe box, or hides it.
    pub fn set_stock(&mut self, stock: Option<Aabb>) {
        let stock = stock.filter(|b| !b.is_empty() && b.min.is_finite() && b.max.is_finite());
        if stock == self.stock {
            return;
        }
        self.stock = stock;
        if self.shared.is_some() {
            let lines = stock.as_ref().map(geometry::box_lines);
            lock(&self.inbox).set(gpu::Slot::Stock, gpu::Change::Lines(lines));
        }
    }

    /// Shows `toolpath` under `id`, replacing what was there, and its preview once uploaded.
    pub fn set_toolpath(&mut self, id: ToolpathId, toolpath: &Toolpath, visible: bool) {
        if self.previews.remove(&id).is_some() {
            // A preview still being prepared must not land after the toolpath.
            lock(&self.inbox).request(gpu::Slot::Preview(id));
        }
        let (line, bounds) = geometry::Polyline::from_toolpath(toolpath);
        self.toolpaths.insert(
            id,
            ToolpathEntry {
                bounds,
                visible,
                segments: line.segments(),
            },
        );
        if self.shared.is_some() {
            let scale = if bounds.is_empty() {
                0.0
            } else {
                bounds.size().length() as f32
            };
            self.prepare(gpu::Slot::Toolpath(id), move || {
                gpu::Change::Lines(Some(line.into_lines(scale)))
            });
        }
    }

    /// Shows `pieces` (CL polylines of an operation being computed, `bounds` their extent)
    /// under `id` instead of its toolpath, replacing the previous preview. The points are
    /// converted and simplified on a preparation thread: the UI thread only copies the list.
    pub fn set_preview(
        &mut self,
        id: ToolpathId,
        pieces: &[Arc<[Point3]>],
        bounds: Aabb,
        visible: bool,
    ) {
        let points: usize = pieces.iter().map(|p| p.len()).sum();
        self.previews.insert(
            id,
            ToolpathEntry {
                bounds,
                visible,
                segments: points.saturating_sub(pieces.len()),
            },
        );
        if self.shared.is_some() {
            let pieces = pieces.to_vec();
            let scale = if bounds.is_empty() {
                0.0
            } else {
                bounds.size().length() as f32
            };
            self.prepare(gpu::Slot::Preview(id), move || {
                let (line, _) = geometry::Polyline::from_pieces(&pieces);
                gpu::Change::Lines(Some(line.into_lines(scale)))
            });
        }
    }

    /// Drops the preview under `id` (a cancelled or failed run): its toolpath, if it has
    /// one, shows again.
    pub fn remove_preview(&mut self, id: ToolpathId) {
        if self.previews.remove(&id).is_some() {
            lock(&self.inbox).set(gpu::Slot::Preview(id), gpu::Change::Lines(None));
        }
    }

    /// Number of segments of the preview under `id`, if there is one.
    pub fn preview_segments(&self, id: ToolpathId) -> Option<usize> {
        self.previews.get(&id).map(|t| t.segments)
    }

    pub fn remove_toolpath(&mut self, id: ToolpathId) {
        if self.toolpaths.remove(&id).is_some() {
            lock(&self.inbox).set(gpu::Slot::Toolpath(id), gpu::Change::Lines(None));
        }
    }

    pub fn set_toolpath_visible(&mut self, id: ToolpathId, visible: bool) {
        for entries in [&mut self.toolpaths, &mut self.previews] {
            if let Some(t) = entries.get_mut(&id) {
                t.visible = visible;
            }
        }
    }

    /// Number of segments drawn for a toolpath at full detail (moves of zero length are
    /// skipped), if it is in the view.
    pub fn toolpath_segments(&self, id: ToolpathId) -> Option<usize> {
        self.toolpaths.get(&id).map(|t| t.segments)
    }

    /// What the last frame drew: model triangles and toolpath segments after level of detail
    /// and culling. `None` without GL or before the first paint.
    pub fn last_frame_stats(&self) -> Option<gpu::FrameStats> {
        self.shared.as_ref().and_then(|s| lock(s).stats())
    }

    /// Turns the camera to a preset direction and frames the scene.
    pub fn preset(&mut self, preset: ViewPreset) {
        self.camera.preset(preset);
        self.fit_pending = true;
    }

    /// Frames the model (and stock) in the view.
    pub fn fit(&mut self) {
        self.fit_pending = true;
    }

    /// The scene's extent: model, stock and visible toolpaths (a unit box when empty, so the
    /// camera always has something to look at).
    fn scene_bounds(&self) -> Aabb {
        let mut b = Aabb::EMPTY;
        let mut add = |x: &Aabb| {
            if !x.is_empty() {
                b.extend(x.min);
                b.extend(x.max);
            }
        };
        if let Some((m, _)) = &self.model {
            add(m);
        }
        if let Some(s) = &self.stock {
            add(s);
        }
        for t in self.toolpaths.values().chain(self.previews.values()) {
            if t.visible {
                add(&t.bounds);
            }
        }
        if b.is_empty() {
            b.extend(Point3::new(-10.0, -10.0, -10.0));
            b.extend(Point3::new(10.0, 10.0, 10.0));
        }
        b
    }

    pub fn show(&mut self, ui: &mut Ui) {
        if self.shared.is_some() {
            let mut repaint = lock(&self.repaint);
            if repaint.is_none() {
                *repaint = Some(ui.ctx().clone());
            }
        }
        self.workers.retain(|w| !w.is_finished());
        let size = ui.available_size().max(vec2(1.0, 1.0));
        let (rect, response) = ui.allocate_exact_size(size, Sense::click_and_drag());
        let aspect = rect.width() / rect.height().max(1.0);
        let scene = self.scene_bounds();
        let scale = (scene.size().length() as f32).max(1e-3);

        if response.double_clicked() {
            self.fit_pending = true;
        }
        if response.dragged() {
            let d = response.drag_delta();
            let shift = ui.input(|i| i.modifiers.shift);
            if response.dragged_by(PointerButton::Secondary)
                || response.dragged_by(PointerButton::Middle)
                || (shift && response.dragged_by(PointerButton::Primary))
            {
                self.camera.pan(d.x, d.y, rect.height());
            } else if response.dragged_by(PointerButton::Primary) {
                self.camera.orbit(d.x, d.y);
            }
        }
        if let Some(pos) = response.hover_pos() {
            let (scroll, zoom) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            if scroll != 0.0 || zoom != 1.0 {
                // One wheel notch (about 50 points) moves about 10% closer.
                let factor = (-scroll * 0.002).exp() / zoom;
                let ndc = (
                    (pos.x - rect.center().x) / (rect.width() * 0.5),
                    (rect.center().y - pos.y) / (rect.height() * 0.5),
                );
                self.camera.zoom(factor, Some(ndc), aspect, scale);
                // The view used the scroll; a scroll area around it must not also move.
                ui.input_mut(|i| i.smooth_scroll_delta = Vec2::ZERO);
            }
        }
        if self.fit_pending {
            self.fit_pending = false;
            self.camera.fit(&scene, aspect);
        }

        let [r, g, b] = gpu::BACKGROUND;
        let background = egui::Color32::from_rgb(
            (r * 255.0).round() as u8,
            (g * 255.0).round() as u8,
            (b * 255.0).round() as u8,
        );
        match &self.shared {
            Some(shared) => {
                let params = gpu::FrameParams {
                    camera: self.camera.frame(&scene),
                    visible: {
                        let entries = self.toolpaths.iter().chain(&self.previews);
                        let mut ids: Vec<ToolpathId> = entries
                            .filter(|(_, t)| t.visible)
                            .map(|(id, _)| *id)
                            .collect();
                        ids.sort_unstable();
                        ids.dedup();
                        ids.into_iter()
                            .map(|id| {
                                let color = self
                                    .legend
                                    .iter()
                                    .find(|(l, ..)| *l == id)
                                    .map_or(OPERATION_COLORS[0], |l| l.2);
                                (id, color)
                            })
                            .collect()
                    },
                    layers: self.layers,
                    lift: scale * 2e-4,
                    inspect: self.inspect,
                };
                let shared_cb = Arc::clone(shared);
                let inbox = Arc::clone(&self.inbox);
                let callback = egui_glow::CallbackFn::new(move |info, painter| {
                    lock(&shared_cb).paint(&info, painter, &params, &inbox);
                });
                ui.painter().add(egui::PaintCallback {
                    rect,
                    callback: Arc::new(callback),
                });
                if let Some(err) = lock(shared).error.clone() {
                    note(ui, rect, &err);
                }
            }
            None => {
                ui.painter().rect_filled(rect, 0.0, background);
                note(ui, rect, "3D view needs OpenGL");
            }
        }
        self.overlay(ui, rect);
    }

    /// The preset buttons in the view's top-right corner; what is drawn and the legend in its
    /// top-left corner.
    fn overlay(&mut self, ui: &mut Ui, rect: Rect) {
        let mut left = ui.new_child(
            UiBuilder::new()
                .max_rect(rect.shrink(6.0))
                .layout(Layout::top_down(Align::Min)),
        );
        left.horizontal(|ui| {
            ui.label("Show")
                .on_hover_text("What the view draws besides the cutting moves");
            ui.checkbox(&mut self.layers.model, "model")
                .on_hover_text("Show the model");
            if self.simulated {
                ui.checkbox(&mut self.layers.simulated, "simulated")
                    .on_hover_text(
                        "Show the stock as the simulated program leaves it instead of the model",
                    );
            }
            ui.checkbox(&mut self.layers.stock, "stock")
                .on_hover_text("Show the stock's edges");
            ui.checkbox(&mut self.layers.rapids, "rapids")
                .on_hover_text("Show rapid moves (yellow)");
            ui.checkbox(&mut self.layers.plunges, "plunges")
                .on_hover_text("Show plunges and ramps (orange-red)");
            ui.checkbox(&mut self.layers.cuts, "cuts")
                .on_hover_text("Show cutting moves (each operation's colour, as in the legend)");
        });
        for (id, name, c) in &self.legend {
            let shown = self
                .toolpaths
                .get(id)
                .or_else(|| self.previews.get(id))
                .is_some_and(|t| t.visible);
            if !shown {
                continue;
            }
            left.horizontal(|ui| {
                let (r, _) = ui.allocate_exact_size(Vec2::splat(10.0), egui::Sense::hover());
                let rgb = |v: f32| (v * 255.0).round() as u8;
                ui.painter().rect_filled(
                    r,
                    2.0,
                    egui::Color32::from_rgb(rgb(c[0]), rgb(c[1]), rgb(c[2])),
                );
                ui.label(egui::RichText::new(name).color(egui::Color32::LIGHT_GRAY))
                    .on_hover_text("This operation's cuts are drawn in this colour");
            });
        }

        let mut corner = ui.new_child(
            UiBuilder::new()
                .max_rect(rect.shrink(6.0))
                .layout(Layout::right_to_left(Align::Min)),
        );
        corner.spacing_mut().item_spacing.x = 4.0;
        // Right to left: reads "Top Front Side Iso Fit" on screen.
        if corner
            .small_button("Fit")
            .on_hover_text("Frame the model, stock and toolpaths (or double-click the view)")
            .clicked()
        {
            self.fit();
        }
        let presets = [
            (
                ViewPreset::Iso,
                "Iso",
                "Isometric view from the front right, above",
            ),
            (
                ViewPreset::Side,
                "Side",
                "Side view from the right, looking along −X",
            ),
            (ViewPreset::Front, "Front", "Front view, looking along +Y"),
            (
                ViewPreset::Top,
                "Top",
                "Top view, looking down −Z (X right, Y up)",
            ),
        ];
        for (preset, label, tip) in presets {
            if corner.small_button(label).on_hover_text(tip).clicked() {
                self.preset(preset);
            }
        }
    }
}

/// A centred line of text over the view (why there is no 3D).
fn note(ui: &mut Ui, rect: Rect, text: &str) {
    let area = Rect::from_center_size(rect.center(), vec2(rect.width().min(480.0), 40.0));
    ui.put(
        area,
        egui::Label::new(egui::RichText::new(text).color(egui::Color32::LIGHT_GRAY)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;
    use millpond_core::toolpath::MoveKind;

    fn scene(view: &mut SceneView) {
        let mesh = geometry::tests::box_mesh(Point3::new(40.0, 30.0, 10.0));
        view.set_model(&mesh);
        view.set_stock(Some(Aabb {
            min: Point3::new(-2.0, -2.0, 0.0),
            max: Point3::new(42.0, 32.0, 11.0),
        }));
        let mut tp = Toolpath {
            start: Point3::new(0.0, 0.0, 15.0),
            moves: vec![],
        };
        tp.push(MoveKind::Plunge, Point3::new(0.0, 0.0, 10.0));
        tp.push(MoveKind::Cut, Point3::new(40.0, 0.0, 10.0));
        tp.push(MoveKind::Rapid, Point3::new(40.0, 0.0, 15.0));
        view.set_toolpath(7, &tp, true);
    }

    /// egui_kittest has no GL: the view still takes its space, shows the preset buttons (which
    /// work) and says why there is no 3D, without panicking.
    #[test]
    fn without_gl_the_view_keeps_its_controls() {
        let mut view = SceneView::new(None);
        assert!(!view.has_gl());
        scene(&mut view);
        assert_eq!(view.toolpath_segments(7), Some(3));
        assert_eq!(view.last_frame_stats(), None);
        let mut harness = Harness::builder()
            .with_size(egui::vec2(640.0, 400.0))
            .build_ui_state(|ui, view: &mut SceneView| view.show(ui), view);
        harness.run();
        harness.get_by_label("3D view needs OpenGL");
        for label in ["Front", "Side", "Iso", "Fit"] {
            harness.get_by_label(label);
        }
        harness.get_by_label("Top").click();
        harness.run();
        let top = harness.state().camera;
        assert!(
            (top.pitch - std::f32::consts::FRAC_PI_2).abs() < 1e-6,
            "{top:?}"
        );
        harness.get_by_label("Side").click();
        harness.run();
        assert_eq!(harness.state().camera.pitch, 0.0);
        let view = harness.state_mut();
        view.set_toolpath_visible(7, false);
        view.remove_toolpath(7);
        assert_eq!(view.toolpath_segments(7), None);
        view.clear_model();
        view.set_stock(None);
        harness.run();
    }

    /// A preview is drawn under its operation's id until the toolpath replaces it, or until
    /// it is dropped; it counts in the scene's extent meanwhile.
    #[test]
    fn a_preview_gives_way_to_the_toolpath() {
        let mut view = SceneView::new(None);
        let piece = |y: f64| -> Arc<[Point3]> {
            (0..11)
                .map(|i| Point3::new(f64::from(i), y, 60.0))
                .collect::<Vec<_>>()
                .into()
        };
        let mut bounds = Aabb::EMPTY;
        bounds.extend(Point3::new(0.0, 0.0, 60.0));
        bounds.extend(Point3::new(10.0, 1.0, 60.0));
        view.set_preview(7, &[piece(0.0), piece(1.0)], bounds, true);
        assert_eq!(
            view.preview_segments(7),
            Some(20),
            "no segment between pieces"
        );
        assert_eq!(view.scene_bounds().max.z, 60.0);
        view.set_toolpath_visible(7, false);
        assert!(!view.previews[&7].visible);
        view.set_toolpath_visible(7, true);
        scene(&mut view);
        assert_eq!(view.preview_segments(7), None, "replaced by the toolpath");
        assert_eq!(view.toolpath_segments(7), Some(3));
        view.set_preview(8, &[piece(0.0)], bounds, true);
        view.remove_preview(8);
        assert_eq!(view.preview_segments(8), None);
        assert_eq!(view.scene_bounds().max.z, 15.0);
    }

    /// Fit frames what is shown: after a fit the scene's centre is the orbit target.
    #[test]
    fn fit_centres_on_the_scene() {
        let mut view = SceneView::new(None);
        scene(&mut view);
        let mut harness = Harness::builder()
            .with_size(egui::vec2(640.0, 400.0))
            .build_ui_state(|ui, view: &mut SceneView| view.show(ui), view);
        harness.run();
        let c = harness.state().camera;
        // Model, stock and toolpath span x −2…42, y −2…32, z 0…15.
        assert!((c.target.x - 20.0).abs() < 1e-3, "{c:?}");
        assert!((c.target.y - 15.0).abs() < 1e-3, "{c:?}");
        assert!((c.target.z - 7.5).abs() < 1e-3, "{c:?}");
    }
}
