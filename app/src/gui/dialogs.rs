//! Native file dialogs (rfd's xdg-desktop-portal backend) driven on background threads.
//!
//! A portal dialog can stay open for minutes; the window must keep drawing and computing
//! meanwhile, so each dialog runs its future on a thread of its own with a small
//! single-threaded tokio runtime and sends the answer back over a channel.

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};

/// A dialog that may still be open.
#[derive(Debug)]
pub struct PendingDialog {
    rx: Receiver<Option<PathBuf>>,
}

impl PendingDialog {
    /// `Some(answer)` once the dialog closed; the answer is `None` if the user cancelled.
    pub fn poll(&self) -> Option<Option<PathBuf>> {
        match self.rx.try_recv() {
            Ok(answer) => Some(answer),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(None),
        }
    }
}

fn spawn<F>(repaint: &egui::Context, make: impl FnOnce() -> F + Send + 'static) -> PendingDialog
where
    F: Future<Output = Option<rfd::FileHandle>>,
{
    let (tx, rx) = channel();
    let repaint = repaint.clone();
    let spawned = std::thread::Builder::new()
        .name("millpond-dialog".into())
        .spawn(move || {
            let answer = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
                .and_then(|rt| rt.block_on(make()))
                .map(|h| h.path().to_path_buf());
            let _ = tx.send(answer);
            repaint.request_repaint();
        });
    if spawned.is_err() {
        // The receiver sees a closed channel: the same as a cancelled dialog.
        tracing::warn!("cannot start a thread for the file dialog");
    }
    PendingDialog { rx }
}

/// "Open model": STL files.
pub fn open_model(repaint: &egui::Context, start: Option<PathBuf>) -> PendingDialog {
    spawn(repaint, move || {
        let mut d = rfd::AsyncFileDialog::new()
            .set_title("Open model")
            .add_filter("STL models", &["stl", "STL"])
            .add_filter("All files", &["*"]);
        if let Some(dir) = start {
            d = d.set_directory(dir);
        }
        d.pick_file()
    })
}

/// "Export G-code": where to save the program.
pub fn save_gcode(
    repaint: &egui::Context,
    start: Option<PathBuf>,
    file_name: String,
) -> PendingDialog {
    spawn(repaint, move || {
        let mut d = rfd::AsyncFileDialog::new()
            .set_title("Export G-code")
            .add_filter("G-code", &["ngc", "nc", "gcode", "tap"])
            .set_file_name(file_name);
        if let Some(dir) = start {
            d = d.set_directory(dir);
        }
        d.save_file()
    })
}
