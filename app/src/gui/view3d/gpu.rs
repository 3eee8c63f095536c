//! The GL side of the view: three-d objects living in the GL context that egui paints with.
//!
//! All GL work happens inside egui's paint callback, where the context is current and its
//! framebuffer bound, so uploads wait there too: the UI thread only prepares CPU data
//! ([`Pending`]) and the next paint uploads it once.

use super::ToolpathId;
use super::camera::CameraFrame;
use super::geometry::{ModelData, Segments};
use egui_glow::glow;
use std::collections::BTreeMap;
use std::sync::Arc;
use three_d::{
    AmbientLight, Blend, Camera, ClearState, Context, CpuMaterial, CpuMesh, Cull, DepthTest,
    DirectionalLight, Gm, InnerSpace, InstanceBuffer, Light, Mat4, Mesh, PhysicalMaterial,
    Positions, Program, Rad, RenderStates, RenderTarget, ScissorBox, Srgba, ToneMapping, Vec4,
    Viewport, WriteMask, vec2, vec4,
};

/// Segment quads: each instance is one segment, expanded in the vertex shader to two triangles
/// `half_width` pixels either side of the projected line. This is the GL_LINES of a core
/// profile without its limits (1-pixel width only, no way to issue it without `unsafe` glow):
/// one buffer per toolpath, one instanced draw call, widths in pixels at any zoom.
const LINE_VS: &str = r#"
uniform mat4 u_view;
uniform mat4 u_projection;
uniform vec2 u_viewport;
uniform float u_half_width;
uniform float u_lift;
uniform vec4 u_colors[4];
in vec4 a_start;
in vec3 a_end;
out vec4 v_color;

const float ALONG[6] = float[6](0.0, 0.0, 1.0, 1.0, 0.0, 1.0);
const float SIDE[6] = float[6](-1.0, 1.0, -1.0, -1.0, 1.0, 1.0);

void main() {
    // Lift both ends towards the eye so a path lying on the surface is not buried in it.
    vec4 v0 = u_view * vec4(a_start.xyz, 1.0);
    vec4 v1 = u_view * vec4(a_end, 1.0);
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
    float t = ALONG[gl_VertexID];
    vec4 p = t < 0.5 ? p0 : p1;
    // Extend the ends by half a width so that joints between segments have no notches.
    vec2 offset = (normal * SIDE[gl_VertexID] + dir * (t * 2.0 - 1.0)) * u_half_width;
    p.xy += offset / u_viewport * p.w;
    gl_Position = p;
    v_color = u_colors[int(a_start.w + 0.5)];
}
"#;

const LINE_FS: &str = r#"
in vec4 v_color;
layout (location = 0) out vec4 out_color;
void main() {
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

/// The view's background (sRGB); also what egui shows without GL.
pub const BACKGROUND: [f32; 3] = [0.16, 0.17, 0.19];

/// One batch of segments on the GPU.
struct GpuSegments {
    start: InstanceBuffer<[f32; 4]>,
    end: InstanceBuffer<[f32; 3]>,
    count: u32,
}

impl GpuSegments {
    fn new(ctx: &Context, s: &Segments) -> Option<Self> {
        let count = u32::try_from(s.len()).ok().filter(|&n| n > 0)?;
        Some(Self {
            start: InstanceBuffer::new_with_data(ctx, &s.start),
            end: InstanceBuffer::new_with_data(ctx, &s.end),
            count,
        })
    }
}

/// A change the UI asked for, waiting for the next paint to reach the GPU.
#[derive(Debug)]
pub enum Pending {
    Model(Option<ModelData>),
    Stock(Option<Segments>),
    Toolpath(ToolpathId, Segments),
    Remove(ToolpathId),
}

/// What one frame draws, decided on the UI thread and moved into the paint callback.
#[derive(Clone, Debug)]
pub struct FrameParams {
    pub camera: CameraFrame,
    pub visible: Vec<ToolpathId>,
    /// Distance to lift lines towards the eye, world units (a tiny fraction of the scene).
    pub lift: f32,
}

/// Shared between the view (UI thread) and its paint callbacks.
#[derive(Default)]
pub struct Shared {
    pending: Vec<Pending>,
    gpu: Option<Gpu>,
    /// Why 3D drawing is off (context or shader creation failed); shown in the view.
    pub error: Option<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("pending", &self.pending.len())
            .field("gpu", &self.gpu.is_some())
            .field("error", &self.error)
            .finish()
    }
}

impl Shared {
    pub fn push(&mut self, change: Pending) {
        // A newer model or stock replaces one not yet uploaded; no point uploading both.
        match &change {
            Pending::Model(_) => self.pending.retain(|p| !matches!(p, Pending::Model(_))),
            Pending::Stock(_) => self.pending.retain(|p| !matches!(p, Pending::Stock(_))),
            Pending::Toolpath(id, _) | Pending::Remove(id) => self
                .pending
                .retain(|p| !matches!(p, Pending::Toolpath(i, _) | Pending::Remove(i) if i == id)),
        }
        self.pending.push(change);
    }

    /// Draws the scene into the framebuffer egui is painting to. Called from the paint callback.
    pub fn paint(
        &mut self,
        info: &egui::PaintCallbackInfo,
        painter: &egui_glow::Painter,
        params: &FrameParams,
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
        for change in self.pending.drain(..) {
            gpu.apply(change);
        }
        gpu.draw(info, painter.intermediate_fbo(), params);
    }
}

/// GL objects: the three-d context, the model, the line program and its batches.
struct Gpu {
    ctx: Context,
    model: Option<Gm<Mesh, PhysicalMaterial>>,
    lines: Program,
    stock: Option<GpuSegments>,
    toolpaths: BTreeMap<ToolpathId, GpuSegments>,
}

impl Gpu {
    fn new(gl: Arc<glow::Context>) -> Result<Self, String> {
        let ctx = Context::from_gl_context(gl)
            .map_err(|e| format!("cannot use the OpenGL context for 3D: {e}"))?;
        let lines = Program::from_source(&ctx, LINE_VS, LINE_FS)
            .map_err(|e| format!("cannot build the toolpath shader: {e}"))?;
        Ok(Self {
            ctx,
            model: None,
            lines,
            stock: None,
            toolpaths: BTreeMap::new(),
        })
    }

    fn apply(&mut self, change: Pending) {
        match change {
            Pending::Model(data) => {
                self.model = data.filter(|d| !d.positions.is_empty()).map(|d| {
                    let cpu = CpuMesh {
                        positions: Positions::F32(d.positions),
                        normals: Some(d.normals),
                        ..Default::default()
                    };
                    let material = PhysicalMaterial::new_opaque(
                        &self.ctx,
                        &CpuMaterial {
                            albedo: Srgba::new_opaque(190, 196, 204),
                            roughness: 0.75,
                            metallic: 0.0,
                            ..Default::default()
                        },
                    );
                    Gm::new(Mesh::new(&self.ctx, &cpu), material)
                });
            }
            Pending::Stock(s) => {
                self.stock = s.and_then(|s| GpuSegments::new(&self.ctx, &s));
            }
            Pending::Toolpath(id, s) => match GpuSegments::new(&self.ctx, &s) {
                Some(g) => {
                    self.toolpaths.insert(id, g);
                }
                None => {
                    self.toolpaths.remove(&id);
                }
            },
            Pending::Remove(id) => {
                self.toolpaths.remove(&id);
            }
        }
    }

    fn draw(
        &self,
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
        let mut camera = Camera::new_perspective(
            viewport,
            c.eye,
            c.target,
            c.up,
            Rad(c.fov_y),
            c.z_near,
            c.z_far,
        );
        // Plain sRGB output: colours are chosen for the screen, not for a photographic look.
        camera.tone_mapping = ToneMapping::None;
        // A light over the viewer's shoulder (up and to the left of the view direction), so
        // faces turned towards the viewer are bright and steep walls still read as walls.
        let forward = c.target - c.eye;
        let right = forward.cross(c.up);
        let light_dir = (forward.normalize() * 1.0 - c.up.normalize() * 0.6
            + right.normalize() * 0.35)
            .normalize();
        let ambient = AmbientLight::new(&self.ctx, 0.45, Srgba::WHITE);
        let sun = DirectionalLight::new(&self.ctx, 1.9, Srgba::WHITE, light_dir);
        let lights: [&dyn Light; 2] = [&ambient, &sun];
        target.render_partially(scissor, &camera, self.model.iter(), &lights);

        let draw_lines = || {
            let view = camera.view();
            let projection = camera.projection();
            self.draw_segments(self.stock.as_ref(), viewport, view, projection, 1.0, 0.0);
            for id in &params.visible {
                self.draw_segments(
                    self.toolpaths.get(id),
                    viewport,
                    view,
                    projection,
                    0.75,
                    params.lift,
                );
            }
            Ok::<(), three_d::CoreError>(())
        };
        // `write_partially` binds the target and sets the scissor; drawing cannot fail.
        let _ = target.write_partially(scissor, draw_lines);
        let _ = target.into_framebuffer();
    }

    fn draw_segments(
        &self,
        batch: Option<&GpuSegments>,
        viewport: Viewport,
        view: Mat4,
        projection: Mat4,
        half_width: f32,
        lift: f32,
    ) {
        let Some(batch) = batch else {
            return;
        };
        let p = &self.lines;
        p.use_uniform("u_view", view);
        p.use_uniform("u_projection", projection);
        p.use_uniform(
            "u_viewport",
            vec2(viewport.width as f32, viewport.height as f32) * 0.5,
        );
        p.use_uniform("u_half_width", half_width);
        p.use_uniform("u_lift", lift);
        let colors: Vec<Vec4> = LINE_COLORS
            .iter()
            .map(|c| vec4(c[0], c[1], c[2], c[3]))
            .collect();
        p.use_uniform_array("u_colors", &colors);
        p.use_instance_attribute("a_start", &batch.start);
        p.use_instance_attribute("a_end", &batch.end);
        let states = RenderStates {
            write_mask: WriteMask::COLOR_AND_DEPTH,
            depth_test: DepthTest::LessOrEqual,
            blend: Blend::Disabled,
            cull: Cull::None,
        };
        p.draw_arrays_instanced(states, viewport, 6, batch.count);
    }
}
