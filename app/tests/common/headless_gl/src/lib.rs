//! An offscreen OpenGL context for tests and benchmarks: EGL on the device platform (Mesa's
//! software device, llvmpipe, when present), a pbuffer surface with a 24-bit depth buffer as
//! the default framebuffer, and an `egui_glow::Painter` that paints whole egui frames into it —
//! paint callbacks included, so a three-d view inside egui renders exactly as in the app.
//!
//! Why a pbuffer and not a framebuffer object: egui_glow paints callbacks into the framebuffer
//! that is bound (`Painter::intermediate_fbo` is `None`), and a view that hands three-d "the
//! screen" binds framebuffer 0. A pbuffer makes framebuffer 0 real and depth-buffered, like an
//! eframe window with `depth_buffer: 24`, so the code under test runs unchanged.
//!
//! Why Mesa's software device: the same pixels on every machine (a GPU driver would render
//! slightly differently), and no display server needed. Needs only `libegl1` and
//! `libgl1-mesa-dri`.

use egui_glow::glow::{self, HasContext};
use glutin::api::egl::context::PossiblyCurrentContext;
use glutin::api::egl::device::Device;
use glutin::api::egl::display::Display;
use glutin::api::egl::surface::Surface;
use glutin::config::{ConfigSurfaceTypes, ConfigTemplateBuilder};
use glutin::context::{ContextAttributesBuilder, NotCurrentGlContext};
use glutin::display::GlDisplay;
use glutin::surface::{PbufferSurface, SurfaceAttributesBuilder};
use std::num::NonZeroU32;
use std::sync::Arc;

/// A current GL context with a `width × height` pbuffer and an egui painter.
pub struct HeadlessGl {
    painter: egui_glow::Painter,
    gl: Arc<glow::Context>,
    size: [u32; 2],
    device: String,
    // Dropped last: the context (and surface) must outlive every GL object above.
    _surface: Surface<PbufferSurface>,
    _context: PossiblyCurrentContext,
}

impl std::fmt::Debug for HeadlessGl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadlessGl")
            .field("size", &self.size)
            .field("device", &self.device)
            .finish()
    }
}

/// Picks Mesa's software device (`EGL_MESA_device_software`) when there is one, else the first.
fn pick_device() -> Result<(Device, bool), String> {
    let devices: Vec<Device> = Device::query_devices()
        .map_err(|e| format!("cannot list EGL devices: {e}"))?
        .collect();
    let software = devices
        .iter()
        .position(|d| d.extensions().contains("EGL_MESA_device_software"));
    match software {
        Some(i) => Ok((devices[i].clone(), true)),
        None => devices
            .into_iter()
            .next()
            .map(|d| (d, false))
            .ok_or_else(|| "EGL lists no devices".to_string()),
    }
}

impl HeadlessGl {
    /// Creates the context and makes it current on this thread. The error says what is
    /// missing (EGL library, device, config, context), for a test to fail with.
    pub fn new(width: u32, height: u32) -> Result<Self, String> {
        let (Some(w), Some(h)) = (NonZeroU32::new(width), NonZeroU32::new(height)) else {
            return Err(format!("bad surface size {width}×{height}"));
        };
        let (device, software) = pick_device().map_err(|e| {
            format!("{e} (is libEGL with Mesa installed? Debian: libegl1 libgl1-mesa-dri)")
        })?;
        // SAFETY: no native display handle is passed; the device comes from EGL itself.
        let display = unsafe { Display::with_device(&device, None) }
            .map_err(|e| format!("cannot open an EGL display on the device: {e}"))?;
        let template = ConfigTemplateBuilder::new()
            .with_surface_type(ConfigSurfaceTypes::PBUFFER)
            .with_alpha_size(8)
            .with_depth_size(24)
            .build();
        // SAFETY: the template holds no native window.
        let config = unsafe { display.find_configs(template) }
            .map_err(|e| format!("cannot list EGL configs: {e}"))?
            .next()
            .ok_or("no EGL config with a pbuffer, RGBA8 and a 24-bit depth buffer")?;
        // The same request as eframe's first choice: desktop OpenGL, no version asked.
        let attributes = ContextAttributesBuilder::new().build(None);
        // SAFETY: the config comes from this display.
        let context = unsafe { display.create_context(&config, &attributes) }
            .map_err(|e| format!("cannot create an OpenGL context: {e}"))?;
        let surface_attributes = SurfaceAttributesBuilder::<PbufferSurface>::new().build(w, h);
        // SAFETY: the config comes from this display; a pbuffer has no native window.
        let surface = unsafe { display.create_pbuffer_surface(&config, &surface_attributes) }
            .map_err(|e| format!("cannot create a {width}×{height} pbuffer: {e}"))?;
        let context = context
            .make_current(&surface)
            .map_err(|e| format!("cannot make the context current: {e}"))?;
        // SAFETY: the context is current on this thread, and the loader returns its functions.
        let gl = Arc::new(unsafe {
            glow::Context::from_loader_function_cstr(|s| display.get_proc_address(s))
        });
        // SAFETY: plain queries on the current context.
        let device_name = unsafe {
            format!(
                "{} ({}, OpenGL {}){}",
                gl.get_parameter_string(glow::RENDERER),
                gl.get_parameter_string(glow::VENDOR),
                gl.get_parameter_string(glow::VERSION),
                if software {
                    ""
                } else {
                    " — not the software device"
                }
            )
        };
        let painter = egui_glow::Painter::new(Arc::clone(&gl), "", None, false)
            .map_err(|e| format!("cannot create the egui painter: {e}"))?;
        Ok(Self {
            painter,
            gl,
            size: [width, height],
            device: device_name,
            _surface: surface,
            _context: context,
        })
    }

    /// The glow context, for `CreationContext::gl` and the app's 3D view.
    pub fn gl(&self) -> Arc<glow::Context> {
        Arc::clone(&self.gl)
    }

    /// Renderer, vendor and GL version, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Mesa, …)".
    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn size(&self) -> [u32; 2] {
        self.size
    }

    /// Paints one egui frame like eframe does: clear to `clear` (egui's panel fill, as
    /// `App::clear_color`), update textures, tessellate, paint (running paint callbacks).
    pub fn paint(&mut self, ctx: &egui::Context, output: egui::FullOutput, clear: [f32; 4]) {
        let egui::FullOutput {
            mut textures_delta,
            shapes,
            pixels_per_point,
            ..
        } = output;
        let primitives = ctx.tessellate(shapes, pixels_per_point);
        self.painter.clear(self.size, clear);
        self.painter.paint_and_update_textures(
            self.size,
            pixels_per_point,
            &primitives,
            &mut textures_delta,
        );
    }

    /// Waits until the GPU (here: llvmpipe's threads) has finished everything painted so far.
    pub fn finish(&self) {
        // SAFETY: a plain synchronisation call on the current context.
        unsafe { self.gl.finish() };
    }

    /// The pixels as RGBA8, top row first (what an image file expects).
    pub fn read_rgba(&self) -> Vec<u8> {
        let [w, h] = self.size;
        let row = w as usize * 4;
        let mut pixels = vec![0u8; row * h as usize];
        // SAFETY: reads the current default framebuffer into a buffer of exactly w·h·4 bytes;
        // RGBA8 rows are 4-byte aligned, so the default pack alignment fits.
        unsafe {
            self.gl.bind_framebuffer(glow::READ_FRAMEBUFFER, None);
            self.gl.pixel_store_i32(glow::PACK_ALIGNMENT, 4);
            self.gl.read_pixels(
                0,
                0,
                w as i32,
                h as i32,
                glow::RGBA,
                glow::UNSIGNED_BYTE,
                glow::PixelPackData::Slice(Some(&mut pixels)),
            );
        }
        // GL's rows start at the bottom.
        let mut flipped = Vec::with_capacity(pixels.len());
        for r in pixels.chunks_exact(row).rev() {
            flipped.extend_from_slice(r);
        }
        flipped
    }
}

impl Drop for HeadlessGl {
    fn drop(&mut self) {
        self.painter.destroy();
    }
}

/// An egui "window": an egui context painting into a [`HeadlessGl`] at 1 pixel per point, with
/// a fixed clock, so the same inputs give the same pixels on every run.
pub struct Window {
    pub ctx: egui::Context,
    pub gl: HeadlessGl,
    /// What eframe clears to before painting (its default `App::clear_color`).
    pub clear: [f32; 4],
    frame: u32,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("gl", &self.gl)
            .field("frame", &self.frame)
            .finish()
    }
}

impl Window {
    /// A dark-themed window of `width × height` pixels.
    pub fn new(width: u32, height: u32) -> Result<Self, String> {
        let gl = HeadlessGl::new(width, height)?;
        let ctx = egui::Context::default();
        ctx.set_theme(egui::Theme::Dark);
        Ok(Self {
            ctx,
            gl,
            clear: egui::Color32::from_rgba_unmultiplied(12, 12, 12, 180).to_normalized_gamma_f32(),
            frame: 0,
        })
    }

    pub fn size(&self) -> egui::Vec2 {
        let [w, h] = self.gl.size();
        egui::vec2(w as f32, h as f32)
    }

    /// The next frame's input: the whole window, 1 pixel per point, time advancing 1/60 s a
    /// frame, plus `events`.
    pub fn input(&mut self, events: Vec<egui::Event>) -> egui::RawInput {
        let mut input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, self.size())),
            time: Some(f64::from(self.frame) / 60.0),
            max_texture_side: Some(8192),
            system_theme: Some(egui::Theme::Dark),
            events,
            ..Default::default()
        };
        if let Some(v) = input.viewports.get_mut(&egui::ViewportId::ROOT) {
            v.native_pixels_per_point = Some(1.0);
            v.inner_rect = input.screen_rect;
            v.focused = Some(true);
        }
        self.frame += 1;
        input
    }

    /// Runs one egui pass with `events` and paints it, like one eframe frame.
    pub fn frame_with(&mut self, events: Vec<egui::Event>, ui: impl FnMut(&mut egui::Ui)) {
        let input = self.input(events);
        let output = self.ctx.run_ui(input, ui);
        self.gl.paint(&self.ctx, output, self.clear);
    }

    pub fn frame(&mut self, ui: impl FnMut(&mut egui::Ui)) {
        self.frame_with(Vec::new(), ui);
    }

    /// The window's pixels, RGBA8 top row first, alpha forced opaque (a window is opaque
    /// whatever alpha the framebuffer holds).
    pub fn pixels(&self) -> Vec<u8> {
        let mut pixels = self.gl.read_rgba();
        for p in pixels.chunks_exact_mut(4) {
            p[3] = 255;
        }
        pixels
    }
}
