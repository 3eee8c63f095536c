//! The desktop app: eframe (glow backend) with a three-d 3D view (ARCHITECTURE.md §6.2–6.3, §9).
//!
//! - [`app`]: [`MillpondApp`] — the window's state and what its buttons do;
//!   [`MillpondApp::new`] with [`AppOptions`] is also how UI tests build it.
//! - `ui`: drawing (menu, side panel, status bar, preferences), kept thin.
//! - [`model`]: loading STL files off the UI thread; units and placement.
//! - [`operations`]: tool library, operations (one enum variant per strategy), stock.
//! - [`compute`]: the worker that runs operations locally or in the pool.
//! - [`preferences`]: server mode and the pool it starts and stops.
//! - [`stats_panel`]: the Process Statistics panel.
//! - [`export`]: G-code export.
//! - [`detached`]: jobs handed to a pool member and fetched later (`detached_list`: the
//!   remembered ids; `detached_panel`: the window).
//! - [`simulation`]: Simulate: the program machined into the stock, drawn by deviation.
//! - [`view3d`]: the 3D view.
//!
//! Testing aids (environment): `MILLPOND_CONFIG_DIR` puts every setting in another folder;
//! `MILLPOND_AUTOSTART=1` starts computing a deliberately heavy raster (0.01 mm stepover and
//! sampling) at once, so quitting can be tested while the workers are busy;
//! `MILLPOND_AUTOSTART=default` generates the default operation at once (screenshots).

pub mod app;
pub mod check;
pub mod compute;
pub mod detached;
pub mod detached_list;
mod detached_panel;
pub mod dialogs;
pub mod document;
pub mod export;
pub mod model;
pub mod operations;
pub mod preferences;
pub mod settings;
pub mod simulation;
pub mod stats_panel;
mod ui;
pub mod view3d;
mod widgets;

pub use app::{AppOptions, Autostart, MillpondApp, window_title};

use anyhow::{Context as _, bail};

/// The window icon (a 256 px PNG drawn from assets/millpond.svg), built into the binary so
/// `cargo install` needs no files at run time.
pub const ICON_PNG: &[u8] = include_bytes!("../../../assets/millpond.png");

/// What to tell someone who started the app where no window can open.
const HEADLESS_HINT: &str = "for headless use run a subcommand: `millpond toolpath` (STL in, \
     G-code out), `millpond drop` (drop-cutter grid as CSV) or `millpond serve` (offer this \
     computer's cores to the pool); see `millpond --help`";

fn has_display() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens the main window with the bundled default model loaded, and returns when it closes.
pub fn run(model: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(path) = model
        && !path.is_file()
    {
        bail!(
            "cannot open {}: no such file (millpond MODEL opens the window with an STL file)",
            path.display()
        );
    }
    if !has_display() {
        bail!(
            "no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); {HEADLESS_HINT}"
        );
    }
    crate::pool::init_logging();
    let mut options = AppOptions::from_env();
    options.open = model.map(std::path::Path::to_path_buf);
    let mut viewport = egui::ViewportBuilder::default()
        .with_title(window_title(
            None,
            false,
            Some(&model.map_or_else(
                || crate::common::DEFAULT_MODEL_NAME.to_string(),
                model::display_name,
            )),
        ))
        .with_app_id("millpond")
        .with_inner_size([1280.0, 800.0])
        .with_min_inner_size([640.0, 400.0])
        .with_drag_and_drop(true);
    match eframe::icon_data::from_png_bytes(ICON_PNG) {
        Ok(icon) => viewport = viewport.with_icon(icon),
        Err(e) => tracing::warn!("window icon: {e}"),
    }
    let native = eframe::NativeOptions {
        viewport,
        depth_buffer: 24,
        renderer: eframe::Renderer::Glow,
        persistence_path: Some(options.config_dir.join("window.ron")),
        ..Default::default()
    };
    eframe::run_native(
        "Millpond",
        native,
        Box::new(move |cc| Ok(Box::new(MillpondApp::new(cc, options)))),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .with_context(|| format!("cannot open the window; {HEADLESS_HINT}"))
}
