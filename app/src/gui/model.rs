//! The model: loading STL files off the UI thread, and placing the part (units, origin,
//! rotations, mirrors).
//!
//! The mesh as read from the file is kept ([`Model::original`]) together with the list of
//! placement steps, and the mesh the toolpaths run against is always rebuilt from those. So
//! switching units after rotating does what a machinist means (the rotated part, rescaled),
//! and no rounding piles up from transforming an already transformed mesh again and again.

use egui::DroppedFileHandle;
use millpond_core::placement;
pub use millpond_core::placement::{Axis3, Placement, Units};
use millpond_core::{Aabb, Mesh, TriangleIndex};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

/// The part being machined, placed, with its index.
#[derive(Debug, Clone)]
pub struct Model {
    /// What the user calls it: the file name.
    pub name: String,
    /// Where it came from; `None` for the bundled default part.
    pub path: Option<PathBuf>,
    /// The mesh as read from the file, before units and placement.
    pub original: Arc<Mesh>,
    pub units: Units,
    pub placement: Vec<Placement>,
    /// What toolpaths are computed against.
    pub mesh: Arc<Mesh>,
    pub index: Arc<TriangleIndex>,
    /// Changes whenever `mesh` does; a toolpath computed for another generation is void.
    pub generation: u64,
}

impl Model {
    /// Builds the placed mesh and its index (what the loader thread runs).
    pub fn build(
        name: String,
        path: Option<PathBuf>,
        original: Arc<Mesh>,
        units: Units,
        placement: Vec<Placement>,
    ) -> Result<Self, String> {
        let mesh = placement::place(&original, units, &placement).map_err(|e| e.to_string())?;
        let index = Arc::new(TriangleIndex::new(&mesh));
        Ok(Self {
            name,
            path,
            original,
            units,
            placement,
            mesh,
            index,
            generation: 0,
        })
    }

    pub fn bounds(&self) -> Aabb {
        self.mesh.bounds()
    }

    pub fn triangles(&self) -> usize {
        self.mesh.len()
    }

    pub fn skipped_degenerate(&self) -> usize {
        self.original.skipped_degenerate()
    }
}

/// Where a model's bytes come from.
#[derive(Debug)]
enum Source {
    Bundled(&'static [u8]),
    Path(PathBuf),
    /// A file dropped on the window; read through the handle so the same code serves every
    /// platform eframe runs on.
    Dropped(DroppedFileHandle),
    /// A placement change: the original mesh is already in memory.
    Mesh(Arc<Mesh>),
}

/// What the loader reports.
#[derive(Debug)]
pub enum LoadOutcome {
    Loaded(Box<Model>),
    Failed {
        /// The file name, for the error banner.
        name: String,
        path: Option<PathBuf>,
        message: String,
    },
}

/// Loads and rebuilds models on background threads; the UI polls [`ModelLoader::poll`].
///
/// Only the newest request counts: opening B while A still loads drops A's result, so the
/// window never jumps back to a file the user has moved on from.
#[derive(Debug)]
pub struct ModelLoader {
    tx: Sender<(u64, LoadOutcome)>,
    rx: Receiver<(u64, LoadOutcome)>,
    latest: u64,
    busy: Option<String>,
    repaint: egui::Context,
}

/// The file name part of a path, for titles and banners.
pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl ModelLoader {
    pub fn new(repaint: egui::Context) -> Self {
        let (tx, rx) = channel();
        Self {
            tx,
            rx,
            latest: 0,
            busy: None,
            repaint,
        }
    }

    /// What is loading now ("part.stl"), if anything.
    pub fn busy(&self) -> Option<&str> {
        self.busy.as_deref()
    }

    /// Parses the bundled default part right here: it is small and ships in the binary, so the
    /// first frame already shows it and one click on Generate works.
    pub fn load_bundled_now(bytes: &'static [u8], name: &str) -> Result<Model, String> {
        load(Source::Bundled(bytes), name, Units::Millimetres, Vec::new())
            .map_err(|e| format!("the bundled model is damaged: {e}"))
    }

    pub fn open_path(&mut self, path: PathBuf) {
        let name = display_name(&path);
        self.spawn(
            name,
            Some(path.clone()),
            Source::Path(path),
            Units::Millimetres,
            Vec::new(),
        );
    }

    /// Opens a job's model with the job's units and placement.
    pub fn open_placed(&mut self, path: PathBuf, units: Units, placement: Vec<Placement>) {
        let name = display_name(&path);
        self.spawn(
            name,
            Some(path.clone()),
            Source::Path(path),
            units,
            placement,
        );
    }

    /// What drag and drop calls (and the UI tests, with a handle to a temporary file).
    pub fn open_dropped(&mut self, file: DroppedFileHandle) {
        let path = file.path().to_path_buf();
        let name = display_name(&path);
        self.spawn(
            name,
            Some(path),
            Source::Dropped(file),
            Units::Millimetres,
            Vec::new(),
        );
    }

    /// Rebuilds `model` with other units or placement.
    pub fn replace(&mut self, model: &Model, units: Units, placement: Vec<Placement>) {
        self.spawn(
            model.name.clone(),
            model.path.clone(),
            Source::Mesh(model.original.clone()),
            units,
            placement,
        );
    }

    fn spawn(
        &mut self,
        name: String,
        path: Option<PathBuf>,
        source: Source,
        units: Units,
        placement: Vec<Placement>,
    ) {
        self.latest += 1;
        let seq = self.latest;
        self.busy = Some(name.clone());
        let tx = self.tx.clone();
        let repaint = self.repaint.clone();
        let spawned = std::thread::Builder::new()
            .name("millpond-load".into())
            .spawn(move || {
                let outcome = match load(source, &name, units, placement) {
                    Ok(mut model) => {
                        model.path = path;
                        LoadOutcome::Loaded(Box::new(model))
                    }
                    Err(message) => LoadOutcome::Failed {
                        name,
                        path,
                        message,
                    },
                };
                let _ = tx.send((seq, outcome));
                repaint.request_repaint();
            });
        if let Err(e) = spawned {
            let _ = self.tx.send((
                seq,
                LoadOutcome::Failed {
                    name: self.busy.clone().unwrap_or_default(),
                    path: None,
                    message: format!("cannot start a loader thread: {e}"),
                },
            ));
        }
    }

    /// The outcome of the newest request, once it is there.
    pub fn poll(&mut self) -> Option<LoadOutcome> {
        let mut newest = None;
        while let Ok((seq, outcome)) = self.rx.try_recv() {
            if seq == self.latest {
                self.busy = None;
                newest = Some(outcome);
            }
        }
        newest
    }
}

fn load(
    source: Source,
    name: &str,
    units: Units,
    placement: Vec<Placement>,
) -> Result<Model, String> {
    let original = match source {
        Source::Bundled(bytes) => {
            Arc::new(Mesh::from_stl_bytes(bytes, name).map_err(|e| e.to_string())?)
        }
        Source::Path(path) => Arc::new(Mesh::from_stl_path(&path).map_err(|e| e.to_string())?),
        Source::Dropped(file) => {
            let label = file.path().display().to_string();
            let bytes = file
                .bytes()
                .map_err(|e| format!("{label}: cannot read: {e}"))?;
            Arc::new(Mesh::from_stl_bytes(&bytes, &label).map_err(|e| e.to_string())?)
        }
        Source::Mesh(mesh) => mesh,
    };
    Model::build(name.to_string(), None, original, units, placement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::{Point3, Triangle};

    fn tri_mesh() -> Arc<Mesh> {
        let t = Triangle::new(
            Point3::new(1.0, 2.0, 3.0),
            Point3::new(3.0, 2.0, 3.0),
            Point3::new(1.0, 6.0, 4.0),
        );
        Arc::new(Mesh::from_triangles(vec![t], "t").unwrap())
    }

    #[test]
    fn placement_steps_apply_in_order_from_the_original() {
        let m = Model::build(
            "t".into(),
            None,
            tri_mesh(),
            Units::Inches,
            vec![Placement::MoveToOrigin],
        )
        .unwrap();
        let b = m.bounds();
        assert_eq!(b.min, Point3::new(0.0, 0.0, 0.0));
        assert!((b.max.x - 2.0 * 25.4).abs() < 1e-9);
        assert!((b.max.y - 4.0 * 25.4).abs() < 1e-9);

        let c = Model::build(
            "t".into(),
            None,
            tri_mesh(),
            Units::Millimetres,
            vec![Placement::Center, Placement::Rotate(Axis3::Z)],
        )
        .unwrap();
        let b = c.bounds();
        // Centred box x -1..1, y -2..2; a quarter turn about Z swaps them.
        assert!((b.min.x + 2.0).abs() < 1e-9 && (b.max.x - 2.0).abs() < 1e-9);
        assert!((b.min.y + 1.0).abs() < 1e-9 && (b.max.y - 1.0).abs() < 1e-9);
        assert_eq!(b.min.z, 0.0);
    }

    #[test]
    fn mirrors_keep_normals_pointing_out() {
        let m = Model::build(
            "t".into(),
            None,
            tri_mesh(),
            Units::Millimetres,
            vec![Placement::Mirror(Axis3::X)],
        )
        .unwrap();
        let before = tri_mesh().triangles()[0].normal().unwrap();
        let after = m.mesh.triangles()[0].normal().unwrap();
        // Mirroring X flips the normal's x and keeps y and z.
        assert!((after.x + before.x).abs() < 1e-12);
        assert!((after.z - before.z).abs() < 1e-12);
    }
}
