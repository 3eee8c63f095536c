//! The GL side of the view: three-d objects living in the GL context that egui paints with.
//!
//! All GL work happens inside egui's paint callback, where the context is current and its
//! framebuffer bound, so uploads wait there too: the UI thread and the view's preparation
//! threads only hand CPU data ([`Change`]) to [`Shared`], and the next paint uploads it once.

use super::ToolpathId;
use super::camera::CameraFrame;
use super::geometry::{Chunk, Lines, ModelData, SurfaceData};
use egui_glow::glow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use three_d::{
    Blend, Camera, ClearState, Context, CpuMesh, Cull, DepthTest, EffectMaterialId, Gm, Indices,
    InnerSpace, InstanceBuffer, Interpolation, Light, Mat4, Material, MaterialType, Mesh,
    Positions, Program, Rad, RenderStates, RenderTarget, ScissorBox, Texture2D, Vec3, Viewer,
    Viewport, Wrapping, WriteMask, vec2, vec3, vec4,
};

/// Segment quads: six vertices per segment, expanded in the vertex shader to two triangles
/// `half_width` pixels either side of the projected segment. This is the GL_LINES of a core
/// profile without its limits (1-pixel width only, no way to issue it without `unsafe` glow):
/// widths in pixels at any zoom.
///
/// The segments come from a float texture (two texels per segment, fetched by
/// `gl_VertexID / 6`), not from vertex attributes: per-vertex attributes would store each
/// segment six times, and per-instance attributes (one instance per segment) make Mesa's
/// software rasterizer run its vertex pipeline once per instance (measured: frames 20–25%
/// slower for the same segments). One plain draw call per chunk, 32 bytes per segment.
const LINE_VS: &str = r#"
uniform mat4 u_view;
uniform mat4 u_projection;
uniform vec2 u_viewport;
uniform float u_half_width;
uniform float u_lift;
uniform vec4 u_colors[4];
uniform sampler2D u_segments;
// Draw only segments ending at move u_until or before, and reaching into [u_z.x, u_z.y].
uniform float u_until;
uniform vec2 u_z;
// Always 1.0: see `Gpu::vao_attribute`.
in float a_one;
out vec4 v_color;

const float ALONG[6] = float[6](0.0, 0.0, 1.0, 1.0, 0.0, 1.0);
const float SIDE[6] = float[6](-1.0, 1.0, -1.0, -1.0, 1.0, 1.0);

void main() {
    int segment = gl_VertexID / 6;
    int corner = gl_VertexID - segment * 6;
    // Texel rows are stored bottom up; the width is even, so both texels share a row.
    ivec2 size = textureSize(u_segments, 0);
    int texel = segment * 2;
    int row = size.y - 1 - texel / size.x;
    vec4 start = texelFetch(u_segments, ivec2(texel % size.x, row), 0);
    vec4 end = texelFetch(u_segments, ivec2(texel % size.x + 1, row), 0);
    if (end.w > u_until || max(start.z, end.z) < u_z.x || min(start.z, end.z) > u_z.y) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
        v_color = vec4(0.0);
        return;
    }
    // Lift both ends towards the eye so a path lying on the surface is not buried in it.
    vec4 v0 = u_view * vec4(start.xyz, 1.0);
    vec4 v1 = u_view * vec4(end.xyz, 1.0);
    v0.z += u_lift;
    v1.z += u_lift;
    vec4 p0 = u_projection * v0;
    vec4 p1 = u_projection * v1;
    // Clip against the near plane before dividing, or ends behind the eye flip over.
    float d0 = p0.z + p0.w;
    float d1 = p1.z + p1.w;
    if (d0 < 0.0 && d1 < 0.0) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);
        v_color = vec4(0.0);
        return;
    }
    if (d0 < 0.0) { p0 = mix(p0, p1, d0 / (d0 - d1)); }
    if (d1 < 0.0) { p1 = mix(p1, p0, d1 / (d1 - d0)); }
    vec2 s0 = p0.xy / p0.w * u_viewport;
    vec2 s1 = p1.xy / p1.w * u_viewport;
    vec2 d = s1 - s0;
    float len = length(d);
    vec2 dir = len > 1e-6 ? d / len : vec2(1.0, 0.0);
    vec2 normal = vec2(-dir.y, dir.x);
    float t = ALONG[corner];
    vec4 p = t < 0.5 ? p0 : p1;
    // Extend the ends by half a width so that joints between segments have no notches.
    vec2 offset = (normal * SIDE[corner] + dir * (t * 2.0 - 1.0)) * u_half_width;
    p.xy += offset / u_viewport * p.w;
    gl_Position = p * a_one;
    v_color = u_colors[int(start.w + 0.5)];
}
"#;

const LINE_FS: &str = r#"
in vec4 v_color;
layout (location = 0) out vec4 out_color;
void main() {
    // A hidden kind of move (rapids switched off) has a transparent colour.
    if (v_color.a < 0.5) {
        discard;
    }
    out_color = v_color;
}
"#;

/// Line colours in sRGB: rapid (pale yellow), plunge (orange-red), cut (blue), stock edges
/// (grey). Rapids are light so that the cutting passes under them stay the eye's focus.
const LINE_COLORS: [[f32; 4]; 4] = [
    [0.93, 0.86, 0.48, 1.0],
    [0.98, 0.38, 0.12, 1.0],
    [0.26, 0.55, 1.0, 1.0],
    [0.62, 0.66, 0.72, 1.0],
];

/// The work-zero marker's X, Y and Z in sRGB (the usual red, green, blue).
const AXIS_COLORS: [[f32; 4]; 4] = [
    [0.95, 0.26, 0.21, 1.0],
    [0.30, 0.85, 0.35, 1.0],
    [0.25, 0.55, 1.0, 1.0],
    [0.0; 4],
];

/// The tool drawn at the inspected move (white, over everything).
const TOOL_COLOR: [f32; 4] = [0.96, 0.96, 0.96, 1.0];

/// Colour slots of the rapid and cut moves in `LINE_COLORS`.
const RAPID_SLOT: usize = super::geometry::KIND_RAPID as usize;
const CUT_SLOT: usize = super::geometry::KIND_CUT as usize;
const PLUNGE_SLOT: usize = super::geometry::KIND_PLUNGE as usize;

/// The view's background (sRGB); also what egui shows without GL.
pub const BACKGROUND: [f32; 3] = [0.16, 0.17, 0.19];

/// The model's look: a matte grey surface lit by one directional light and a sky/ground
/// ambient. Much cheaper per pixel than three-d's physically based material, which under
/// software GL cost more than the rest of the frame together; a machined part is matte anyway.
/// With `vertex_colors`, the simulated stock's: each vertex coloured by how far the stock
/// stands from the model there, lit the same way (brighter ambient, so the colours read) so
/// its shape reads as well as its colours.
struct ShadedMaterial {
    /// Linear RGB (unused with vertex colours).
    albedo: Vec3,
    /// Direction the light travels, world space, unit length.
    light_dir: Vec3,
    vertex_colors: bool,
}

/// The lighting both looks share: `shade(albedo, ambient below, ambient above, direct)`.
const SHADING_GLSL: &str = r#"
in vec3 pos;
uniform vec3 u_albedo;
uniform vec3 u_light_dir;
layout (location = 0) out vec4 out_color;
vec4 shade(vec3 albedo, float below, float above, float direct_share) {
    // The facet's normal, facing the viewer: within a triangle the position changes linearly
    // across the screen, so its screen-space derivatives span the facet's plane.
    vec3 c = cross(dFdx(pos), dFdy(pos));
    float l = length(c);
    vec3 n = l > 0.0 ? c / l : vec3(0.0, 0.0, 1.0);
    float direct = max(dot(n, -u_light_dir), 0.0);
    // Ambient from above brighter than from below: up-facing and down-facing walls differ
    // even where the direct light does not reach.
    float ambient = mix(below, above, 0.5 + 0.5 * n.z);
    vec3 linear = albedo * (ambient + direct_share * direct);
    return vec4(pow(linear, vec3(1.0 / 2.2)), 1.0);
}
"#;

const SHADED_MAIN: &str = "void main() { out_color = shade(u_albedo, 0.18, 0.34, 0.75); }\n";
// three-d gives the mesh's vertex colours to a fragment shader that declares `col`.
const COLORED_MAIN: &str =
    "in vec4 col;\nvoid main() { out_color = shade(col.rgb, 0.35, 0.5, 0.6); }\n";

impl Material for ShadedMaterial {
    fn fragment_shader_source(&self, _lights: &[&dyn Light]) -> String {
        let main = if self.vertex_colors {
            COLORED_MAIN
        } else {
            SHADED_MAIN
        };
        format!("{SHADING_GLSL}{main}")
    }

    fn id(&self) -> EffectMaterialId {
        // Ids below 0x5000 are free for materials outside three-d.
        EffectMaterialId(if self.vertex_colors { 0x0102 } else { 0x0101 })
    }

    fn use_uniforms(&self, program: &Program, _viewer: &dyn Viewer, _lights: &[&dyn Light]) {
        if !self.vertex_colors {
            program.use_uniform("u_albedo", self.albedo);
        }
        program.use_uniform("u_light_dir", self.light_dir);
    }

    fn render_states(&self) -> RenderStates {
        RenderStates::default()
    }

    fn material_type(&self) -> MaterialType {
        MaterialType::Opaque
    }
}

/// One chunk of segments on the GPU, with its bounds for culling.
struct GpuChunk {
    texture: Texture2D,
    count: u32,
    min: Vec3,
    max: Vec3,
}

/// Texels per row of a chunk's texture (even: a segment's two texels share a row).
const TEXTURE_WIDTH: usize = 2048;

impl GpuChunk {
    fn new(ctx: &Context, c: &Chunk) -> Option<Self> {
        let count = u32::try_from(c.len()).ok().filter(|&n| n > 0)?;
        let rows = c.texels.len().div_ceil(TEXTURE_WIDTH);
        let width = if rows == 1 {
            c.texels.len()
        } else {
            TEXTURE_WIDTH
        };
        let mut texels = Vec::with_capacity(width * rows);
        texels.extend_from_slice(&c.texels);
        texels.resize(width * rows, [0.0; 4]);
        let texture = Texture2D::new_empty::<[f32; 4]>(
            ctx,
            u32::try_from(width).ok()?,
            u32::try_from(rows).ok()?,
            Interpolation::Nearest,
            Interpolation::Nearest,
            None,
            Wrapping::ClampToEdge,
            Wrapping::ClampToEdge,
        );
        texture.fill(&texels);
        Some(Self {
            texture,
            count,
            min: Vec3::from(c.min),
            max: Vec3::from(c.max),
        })
    }
}

/// One cell of lines on the GPU: its levels of detail, finest first, each in chunks.
struct GpuCell {
    min: Vec3,
    max: Vec3,
    levels: Vec<(f32, Vec<GpuChunk>)>,
}

impl GpuCell {
    /// The coarsest level whose error is below `max_error` (world units), and its error.
    fn level(&self, max_error: f32) -> (f32, &[GpuChunk]) {
        self.levels
            .iter()
            .rev()
            .find(|(tolerance, _)| *tolerance <= max_error)
            .or(self.levels.first())
            .map_or((0.0, &[]), |(tolerance, chunks)| {
                (*tolerance, chunks.as_slice())
            })
    }

    /// Distance from `eye` to the cell's box (zero inside it).
    fn distance(&self, eye: Vec3) -> f32 {
        let d = vec3(
            (self.min.x - eye.x).max(eye.x - self.max.x).max(0.0),
            (self.min.y - eye.y).max(eye.y - self.max.y).max(0.0),
            (self.min.z - eye.z).max(eye.z - self.max.z).max(0.0),
        );
        d.magnitude()
    }
}

/// Lines on the GPU, by cell (see [`super::geometry::Level`]).
struct GpuLines {
    cells: Vec<GpuCell>,
}

impl GpuLines {
    fn new(ctx: &Context, lines: &Lines) -> Option<Self> {
        let upload = |c: &Chunk| GpuChunk::new(ctx, c);
        let cells = lines.levels.first().map_or(0, |l| l.cells.len());
        let mut out = Vec::new();
        for cell in 0..cells {
            let levels: Vec<(f32, Vec<GpuChunk>)> = lines
                .levels
                .iter()
                .map(|l| {
                    let chunks = l.cells.get(cell).map_or(&[][..], Vec::as_slice);
                    (l.tolerance, chunks.iter().filter_map(upload).collect())
                })
                .collect();
            let mut all = levels.iter().flat_map(|(_, chunks)| chunks);
            let Some(first) = all.next() else {
                continue;
            };
            let (mut min, mut max) = (first.min, first.max);
            for c in all {
                min = vec3(min.x.min(c.min.x), min.y.min(c.min.y), min.z.min(c.min.z));
                max = vec3(max.x.max(c.max.x), max.y.max(c.max.y), max.z.max(c.max.z));
            }
            out.push(GpuCell { min, max, levels });
        }
        (!out.is_empty()).then_some(Self { cells: out })
    }
}

/// Whether a box is entirely outside one plane of the clip volume (so off screen).
fn outside_frustum(view_projection: &Mat4, min: Vec3, max: Vec3) -> bool {
    let corners = (0..8).map(|i| {
        view_projection
            * vec4(
                if i & 1 == 0 { min.x } else { max.x },
                if i & 2 == 0 { min.y } else { max.y },
                if i & 4 == 0 { min.z } else { max.z },
                1.0,
            )
    });
    let mut outside = [true; 6];
    for c in corners {
        let tests = [
            c.x < -c.w,
            c.x > c.w,
            c.y < -c.w,
            c.y > c.w,
            c.z < -c.w,
            c.z > c.w,
        ];
        for (o, t) in outside.iter_mut().zip(tests) {
            *o &= t;
        }
    }
    outside.iter().any(|&o| o)
}

/// What a change replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Model,
    Stock,
    /// The program's zero: an axis marker.
    WorkZero,
    /// The tool at the inspected move.
    Tool,
    Toolpath(ToolpathId),
    /// What an operation has computed so far; drawn instead of its toolpath while present.
    Preview(ToolpathId),
    /// The stock as the program leaves it (`millpond_core::simulate`), drawn instead of the
    /// model while present.
    Simulated,
}

/// New contents for a slot, waiting for the next paint to reach the GPU. `None` empties it.
#[derive(Debug)]
pub enum Change {
    Model(Option<ModelData>),
    Lines(Option<Lines>),
    Surface(Option<SurfaceData>),
}

/// What one frame draws, decided on the UI thread and moved into the paint callback.
#[derive(Clone, Debug)]
pub struct FrameParams {
    pub camera: CameraFrame,
    /// The toolpaths to draw, each with its cut colour.
    pub visible: Vec<(ToolpathId, [f32; 4])>,
    pub layers: super::Layers,
    /// Distance to lift lines towards the eye, world units (a tiny fraction of the scene).
    pub lift: f32,
    /// What of the toolpaths to draw (every move at every height by default).
    pub inspect: Inspect,
}

/// Reading a toolpath move by move and layer by layer: the operation drawn up to a move
/// (others whole), and the heights drawn, for every toolpath.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Inspect {
    /// The toolpath drawn up to a move (1-based; 0 draws none of it), and that move.
    pub until: Option<(ToolpathId, u32)>,
    /// Lowest and highest Z drawn.
    pub z: (f32, f32),
}

impl Default for Inspect {
    fn default() -> Self {
        Self {
            until: None,
            z: (f32::NEG_INFINITY, f32::INFINITY),
        }
    }
}

/// How one set of lines is drawn.
#[derive(Clone, Copy)]
struct LineStyle {
    /// Pixels.
    half_width: f32,
    /// Towards the eye, world units.
    lift: f32,
    /// By kind slot.
    colors: [[f32; 4]; 4],
    depth_test: DepthTest,
    /// Segments ending after this move are not drawn.
    until: f32,
    /// Nor those entirely below `z.0` or above `z.1`.
    z: (f32, f32),
}

/// Draw everything: no move limit, every height (what the stock and markers use).
const ALL: (f32, (f32, f32)) = (f32::MAX, (f32::MIN, f32::MAX));

/// Prepared changes on their way to the GPU: shared by the view (UI thread), its preparation
/// threads and its paint callbacks. Holds CPU data only, so a preparation thread never owns
/// (and never drops) a GL object: those must go on the thread with the GL context.
#[derive(Debug, Default)]
pub struct Inbox {
    /// The newest change per slot; an older one not yet uploaded is simply replaced.
    pending: BTreeMap<Slot, Change>,
    /// The latest request per slot: a preparation that finishes after a newer request for its
    /// slot (or after the slot was cleared) is dropped, whatever order threads finish in.
    requested: BTreeMap<Slot, u64>,
    generation: u64,
}

impl Inbox {
    /// Starts a request for `slot`; returns the ticket its result must be delivered with.
    pub fn request(&mut self, slot: Slot) -> u64 {
        self.generation += 1;
        self.requested.insert(slot, self.generation);
        self.pending.remove(&slot);
        self.generation
    }

    /// Queues a prepared change, unless a newer request for its slot came since.
    pub fn deliver(&mut self, slot: Slot, ticket: u64, change: Change) {
        if self.requested.get(&slot) == Some(&ticket) {
            self.pending.insert(slot, change);
        }
    }

    /// A request and its result at once (for what is cheap to prepare).
    pub fn set(&mut self, slot: Slot, change: Change) {
        let ticket = self.request(slot);
        self.deliver(slot, ticket, change);
    }
}

/// The GL side, shared by the view and its paint callbacks (both on the UI thread).
#[derive(Default)]
pub struct Shared {
    gpu: Option<Gpu>,
    /// Why 3D drawing is off (context or shader creation failed); shown in the view.
    pub error: Option<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("gpu", &self.gpu.is_some())
            .field("error", &self.error)
            .finish()
    }
}

impl Shared {
    /// What the last paint drew; `None` before the first paint.
    pub fn stats(&self) -> Option<FrameStats> {
        self.gpu.as_ref().map(|g| g.stats)
    }

    /// Uploads what `inbox` holds, then draws the scene into the framebuffer egui is painting
    /// to. Called from the paint callback.
    pub fn paint(
        &mut self,
        info: &egui::PaintCallbackInfo,
        painter: &egui_glow::Painter,
        params: &FrameParams,
        inbox: &Mutex<Inbox>,
    ) {
        if self.gpu.is_none() && self.error.is_none() {
            match Gpu::new(Arc::clone(painter.gl())) {
                Ok(gpu) => self.gpu = Some(gpu),
                Err(e) => self.error = Some(e),
            }
        }
        let Some(gpu) = &mut self.gpu else {
            return;
        };
        // Poisoned: a preparation thread panicked while delivering; what is there is whole.
        let pending = std::mem::take(&mut inbox.lock().unwrap_or_else(|e| e.into_inner()).pending);
        for (slot, change) in pending {
            gpu.apply(slot, change);
        }
        gpu.draw(info, painter.intermediate_fbo(), params);
    }
}

/// What the last frame drew (for benchmarks and diagnostics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Model triangles.
    pub triangles: usize,
    /// Toolpath segments, after choosing levels of detail and culling chunks off screen.
    pub toolpath_segments: usize,
}

/// GL objects: the three-d context, the model, the line program and its batches.
struct Gpu {
    /// three-d binds its vertex array object only while setting a vertex attribute, and a
    /// core profile draws nothing without one bound; the line shader reads its segments from
    /// a texture, so it uses this one-element instance attribute (1.0) to get the object bound.
    vao_attribute: InstanceBuffer<f32>,
    stats: FrameStats,
    model_triangles: usize,
    ctx: Context,
    model: Option<Gm<Mesh, ShadedMaterial>>,
    simulated: Option<Gm<Mesh, ShadedMaterial>>,
    lines: Program,
    stock: Option<GpuLines>,
    work_zero: Option<GpuLines>,
    tool: Option<GpuLines>,
    toolpaths: BTreeMap<ToolpathId, GpuLines>,
    previews: BTreeMap<ToolpathId, GpuLines>,
}

/// A triangle mesh lit from above: one `albedo` colour, or per-vertex `colors` times it.
fn shaded(
    ctx: &Context,
    positions: Vec<Vec3>,
    indices: Vec<u32>,
    colors: Option<Vec<three_d::Srgba>>,
    albedo: Vec3,
) -> Gm<Mesh, ShadedMaterial> {
    let material = ShadedMaterial {
        albedo,
        light_dir: vec3(0.0, 0.0, -1.0),
        vertex_colors: colors.is_some(),
    };
    let cpu = CpuMesh {
        positions: Positions::F32(positions),
        indices: Indices::U32(indices),
        colors,
        ..Default::default()
    };
    Gm::new(Mesh::new(ctx, &cpu), material)
}

impl Gpu {
    fn new(gl: Arc<glow::Context>) -> Result<Self, String> {
        let ctx = Context::from_gl_context(gl)
            .map_err(|e| format!("cannot use the OpenGL context for 3D: {e}"))?;
        let lines = Program::from_source(&ctx, LINE_VS, LINE_FS)
            .map_err(|e| format!("cannot build the toolpath shader: {e}"))?;
        Ok(Self {
            vao_attribute: InstanceBuffer::new_with_data(&ctx, &[1.0f32]),
            stats: FrameStats::default(),
            model_triangles: 0,
            ctx,
            model: None,
            simulated: None,
            lines,
            stock: None,
            work_zero: None,
            tool: None,
            toolpaths: BTreeMap::new(),
            previews: BTreeMap::new(),
        })
    }

    fn apply(&mut self, slot: Slot, change: Change) {
        let lines = |c: Change| match c {
            Change::Lines(Some(l)) => GpuLines::new(&self.ctx, &l),
            Change::Lines(None) | Change::Model(_) | Change::Surface(_) => None,
        };
        match slot {
            Slot::Model => {
                let data = match change {
                    Change::Model(d) => d,
                    Change::Lines(_) | Change::Surface(_) => None,
                };
                self.model_triangles = data.as_ref().map_or(0, |d| d.indices.len() / 3);
                self.model = data.filter(|d| !d.indices.is_empty()).map(|d| {
                    let shade = vec3(0.62, 0.64, 0.67);
                    shaded(&self.ctx, d.positions, d.indices, None, shade)
                });
            }
            Slot::Simulated => {
                let data = match change {
                    Change::Surface(d) => d,
                    Change::Lines(_) | Change::Model(_) => None,
                };
                self.simulated = data.filter(|d| !d.indices.is_empty()).map(|d| {
                    let white = vec3(1.0, 1.0, 1.0);
                    shaded(&self.ctx, d.positions, d.indices, Some(d.colors), white)
                });
            }
            Slot::Stock => self.stock = lines(change),
            Slot::WorkZero => self.work_zero = lines(change),
            Slot::Tool => self.tool = lines(change),
            Slot::Toolpath(id) => {
                // The finished toolpath replaces its preview the moment it is on the GPU, so
                // the view never flashes empty between the two.
                self.previews.remove(&id);
                match lines(change) {
                    Some(g) => {
                        self.toolpaths.insert(id, g);
                    }
                    None => {
                        self.toolpaths.remove(&id);
                    }
                }
            }
            Slot::Preview(id) => match lines(change) {
                Some(g) => {
                    self.previews.insert(id, g);
                }
                None => {
                    self.previews.remove(&id);
                }
            },
        }
    }

    fn draw(
        &mut self,
        info: &egui::PaintCallbackInfo,
        fbo: Option<glow::Framebuffer>,
        params: &FrameParams,
    ) {
        let vp = info.viewport_in_pixels();
        let clip = info.clip_rect_in_pixels();
        let (Ok(width), Ok(height)) = (u32::try_from(vp.width_px), u32::try_from(vp.height_px))
        else {
            return;
        };
        if width == 0 || height == 0 {
            return;
        }
        let viewport = Viewport {
            x: vp.left_px,
            y: vp.from_bottom_px,
            width,
            height,
        };
        // The scissor is the clip rectangle within the viewport: egui may clip the view (a
        // window partly off screen, a panel being resized) and nothing may spill outside it.
        let x0 = clip.left_px.max(vp.left_px);
        let y0 = clip.from_bottom_px.max(vp.from_bottom_px);
        let x1 = (clip.left_px + clip.width_px).min(vp.left_px + vp.width_px);
        let y1 = (clip.from_bottom_px + clip.height_px).min(vp.from_bottom_px + vp.height_px);
        if x1 <= x0 || y1 <= y0 {
            return;
        }
        let scissor = ScissorBox {
            x: x0,
            y: y0,
            width: (x1 - x0) as u32,
            height: (y1 - y0) as u32,
        };
        let [sw, sh] = info.screen_size_px;
        // Draw into whatever egui is painting to. A framebuffer object we did not create is
        // only borrowed: `into_framebuffer` below takes it back out, so dropping the render
        // target does not delete it.
        let target = match fbo {
            Some(fb) => RenderTarget::from_framebuffer(&self.ctx, sw, sh, fb),
            None => RenderTarget::screen(&self.ctx, sw, sh),
        };
        let [r, g, b] = BACKGROUND;
        target.clear_partially(scissor, ClearState::color_and_depth(r, g, b, 1.0, 1.0));

        let c = &params.camera;
        let camera = Camera::new_perspective(
            viewport,
            c.eye,
            c.target,
            c.up,
            Rad(c.fov_y),
            c.z_near,
            c.z_far,
        );
        // A light over the viewer's shoulder (up and to the left of the view direction), so
        // faces turned towards the viewer are bright and steep walls still read as walls.
        let forward = c.target - c.eye;
        let right = forward.cross(c.up);
        let light_dir =
            (forward.normalize() - c.up.normalize() * 0.6 + right.normalize() * 0.35).normalize();
        if let Some(model) = &mut self.model {
            model.material.light_dir = light_dir;
        }
        if let Some(stock) = &mut self.simulated {
            stock.material.light_dir = light_dir;
        }
        if self.simulated.is_some() && params.layers.simulated {
            target.render_partially(scissor, &camera, self.simulated.iter(), &[]);
        } else if params.layers.model {
            target.render_partially(scissor, &camera, self.model.iter(), &[]);
        }

        let mut drawn = 0;
        let draw_lines = || {
            let frame = LineFrame {
                view: camera.view(),
                projection: camera.projection(),
                viewport,
                eye: c.eye,
                // World units per pixel per unit of distance from the eye.
                pixel_angle: 2.0 * (c.fov_y / 2.0).tan() / height as f32,
                z_near: c.z_near,
            };
            if let Some(stock) = &self.stock
                && params.layers.stock
            {
                self.draw_lines(
                    &frame,
                    stock,
                    LineStyle {
                        half_width: 1.0,
                        lift: 0.0,
                        colors: LINE_COLORS,
                        depth_test: DepthTest::LessOrEqual,
                        until: ALL.0,
                        z: ALL.1,
                    },
                );
            }

            for (id, cut) in &params.visible {
                let shown = self.previews.get(id).or_else(|| self.toolpaths.get(id));
                if let Some(toolpath) = shown {
                    let mut colors = LINE_COLORS;
                    colors[CUT_SLOT] = *cut;
                    // A hidden kind is transparent: the fragment shader drops it.
                    for (slot, shown) in [
                        (RAPID_SLOT, params.layers.rapids),
                        (PLUNGE_SLOT, params.layers.plunges),
                        (CUT_SLOT, params.layers.cuts),
                    ] {
                        if !shown {
                            colors[slot] = [0.0; 4];
                        }
                    }
                    let until = match params.inspect.until {
                        Some((i, n)) if i == *id => n as f32,
                        _ => f32::MAX,
                    };
                    let (lo, hi) = params.inspect.z;
                    drawn += self.draw_lines(
                        &frame,
                        toolpath,
                        LineStyle {
                            half_width: 0.75,
                            lift: params.lift,
                            colors,
                            depth_test: DepthTest::LessOrEqual,
                            until,
                            z: (lo.max(f32::MIN), hi.min(f32::MAX)),
                        },
                    );
                }
            }
            // The program's zero is often inside the part or under toolpaths (a corner of the
            // stock's bottom, the model's origin): drawn last, over everything, so it always
            // shows where the machinist touches off.
            if let Some(marker) = &self.work_zero {
                self.draw_lines(
                    &frame,
                    marker,
                    LineStyle {
                        half_width: 1.75,
                        lift: 0.0,
                        colors: AXIS_COLORS,
                        depth_test: DepthTest::Always,
                        until: ALL.0,
                        z: ALL.1,
                    },
                );
            }
            if let Some(tool) = &self.tool {
                self.draw_lines(
                    &frame,
                    tool,
                    LineStyle {
                        half_width: 1.25,
                        lift: 0.0,
                        colors: [TOOL_COLOR; 4],
                        depth_test: DepthTest::Always,
                        until: ALL.0,
                        z: ALL.1,
                    },
                );
            }
            Ok::<(), three_d::CoreError>(())
        };
        // `write_partially` binds the target and sets the scissor; drawing cannot fail.
        let _ = target.write_partially(scissor, draw_lines);
        let _ = target.into_framebuffer();
        self.stats = FrameStats {
            triangles: if self.model.is_some() {
                self.model_triangles
            } else {
                0
            },
            toolpath_segments: drawn,
        };
    }

    /// Draws the cells on screen, each at the coarsest level whose error is under half a pixel
    /// at the cell's nearest point, one draw call per chunk on screen; returns how
    /// many segments that was.
    fn draw_lines(&self, frame: &LineFrame, lines: &GpuLines, style: LineStyle) -> usize {
        let LineStyle {
            half_width,
            lift,
            colors,
            depth_test,
            until,
            z,
        } = style;
        let p = &self.lines;
        let viewport = frame.viewport;
        p.use_uniform("u_view", frame.view);
        p.use_uniform("u_projection", frame.projection);
        p.use_uniform(
            "u_viewport",
            vec2(viewport.width as f32, viewport.height as f32) * 0.5,
        );
        p.use_uniform("u_half_width", half_width);
        let colors = colors.map(|c| vec4(c[0], c[1], c[2], c[3]));
        p.use_uniform_array("u_colors", &colors);
        p.use_uniform("u_until", until);
        p.use_uniform("u_z", vec2(z.0, z.1));
        let states = RenderStates {
            write_mask: WriteMask::COLOR_AND_DEPTH,
            depth_test,
            blend: Blend::Disabled,
            cull: Cull::None,
        };
        let view_projection = frame.projection * frame.view;
        let mut drawn = 0;
        for cell in &lines.cells {
            if outside_frustum(&view_projection, cell.min, cell.max) {
                continue;
            }
            let depth = cell.distance(frame.eye).max(frame.z_near);
            let (tolerance, chunks) = cell.level(0.5 * depth * frame.pixel_angle);
            // A simplified segment may pass up to its tolerance below the points it replaced
            // (across a hilltop, a convex corner): lift it that much more, so a path lying on
            // the surface does not sink into it. Under half a pixel either way.
            p.use_uniform("u_lift", lift + 1.5 * tolerance);
            for chunk in chunks {
                if outside_frustum(&view_projection, chunk.min, chunk.max) {
                    continue;
                }
                p.use_texture("u_segments", &chunk.texture);
                p.use_instance_attribute("a_one", &self.vao_attribute);
                p.draw_arrays(states, viewport, 6 * chunk.count);
                drawn += chunk.count as usize;
            }
        }
        drawn
    }
}

/// The camera of one frame, as the line shader needs it.
struct LineFrame {
    view: Mat4,
    projection: Mat4,
    viewport: Viewport,
    eye: Vec3,
    /// World units per pixel per unit of distance from the eye.
    pixel_angle: f32,
    z_near: f32,
}
